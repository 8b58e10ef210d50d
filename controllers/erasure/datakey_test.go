package erasure_test

import (
	"crypto/rand"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
)

// keyOf waits for a tenant's data key Secret and returns it.
func keyOf(g Gomega, tn *platformv1.Tenant) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: controllers.DataKeySecretName(tn.Name, tn.UID)}}
	g.Eventually(func() error { return k8s.Get(ctx, client.ObjectKeyFromObject(s), s) }, timeout, interval).Should(Succeed())
	return s
}

func recordOf(tn *platformv1.Tenant) map[string]string {
	out := map[string]string{}
	for _, s := range tn.Status.Erasure {
		out[s.Name] = s.Verification
	}
	return out
}

// Issue 17: the key goes first. With the claim's deletion held up, the key is
// already destroyed, verified and recorded: every copy of the store is beyond
// use even while storage is still there.
func TestTheDataKeyIsDestroyedFirstEvenWhileStorageIsStillThere(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	tn := provisioned(t, g, "key-first", 0)
	key := keyOf(g, tn)
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: tn.NamespaceName(), Name: controllers.DataClaimName}}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
	patch := client.MergeFrom(claim.DeepCopy())
	claim.Finalizers = append(claim.Finalizers, "example.test/hold")
	g.Expect(k8s.Patch(ctx, claim, patch)).To(Succeed())
	release := func() {
		var c corev1.PersistentVolumeClaim
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(claim), &c); err == nil {
			p := client.MergeFrom(c.DeepCopy())
			c.Finalizers = nil
			g.Expect(k8s.Patch(ctx, &c, p)).To(Succeed())
		}
	}
	t.Cleanup(release)

	setState(g, tn.Name, platformv1.TenantDeactivated)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(stepNames(got)).To(Equal([]string{"StopIngest", "DestroyKey", "DeleteWorker"}))
		g.Expect(recordOf(got)["DestroyKey"]).To(ContainSubstring("Secret " + operatorNamespace + "/" + key.Name + " (the data key): GET returns NotFound"))
		g.Expect(got.Status.Encryption).To(BeNil(), "status no longer describes a key that is gone")
		g.Expect(cond(got, platformv1.ConditionErasing).Message).To(ContainSubstring("DeleteStorage"))
	}, timeout, interval).Should(Succeed())
	g.Expect(gone(key)()).To(BeTrue())
	g.Expect(gone(&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: key.Name}})()).To(BeTrue(),
		"the worker's grant on the key goes with it")
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed(), "storage is still there")

	release()
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseErased))
		g.Expect(stepNames(got)).To(Equal([]string{"StopIngest", "DestroyKey", "DeleteWorker", "DeleteStorage", "DeleteNamespace"}))
	}, timeout, interval).Should(Succeed())
}

// A key Secret that cannot be deleted stops the erasure at that step, with a
// Warning Event and the failure metric, and is never recorded as destroyed;
// no later step runs meanwhile. Once it can be deleted, the erasure completes.
func TestAKeyThatCannotBeDeletedIsNeverRecordedDestroyed(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	tn := provisioned(t, g, "key-stuck", 0)
	key := keyOf(g, tn)
	allow := denyDeletionOf(t, g, key)
	failuresBefore := metricValue(g, "omniflow_tenant_erasure_step_failures_total", "step", "DestroyKey")

	setState(g, tn.Name, platformv1.TenantDeactivated)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(stepNames(got)).To(Equal([]string{"StopIngest"}))
		erasing := cond(got, platformv1.ConditionErasing)
		g.Expect(erasing).NotTo(BeNil())
		g.Expect(erasing.Reason).To(Equal("StepFailed"))
		g.Expect(erasing.Message).To(HavePrefix("step DestroyKey failed"))
		g.Expect(eventsAbout(g, tn.Name)).To(ContainElement(HavePrefix("Warning ErasureStepFailed: erasure step DestroyKey failed")))
		g.Expect(metricValue(g, "omniflow_tenant_erasure_step_failures_total", "step", "DestroyKey")).To(BeNumerically(">", max(failuresBefore, 0)))
	}, timeout, interval).Should(Succeed())
	g.Consistently(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.ErasedAt).To(BeNil())
		g.Expect(stepNames(got)).To(Equal([]string{"StopIngest"}))
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(key), &corev1.Secret{})).To(Succeed())
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: tn.NamespaceName(), Name: controllers.WorkerName}, &appsv1.Deployment{})).
			To(Succeed(), "no later step runs before the key is destroyed")
	}, 2*time.Second, interval).Should(Succeed())

	allow()
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseErased))
		g.Expect(recordOf(got)["DestroyKey"]).To(ContainSubstring("GET returns NotFound"))
	}, timeout, interval).Should(Succeed())
	g.Expect(gone(key)()).To(BeTrue())
}

// denyDeletionOf installs an admission policy that refuses deleting obj (a
// storage outage, an admin's policy): the API server answers the operator's
// DELETE with an error. allow removes it.
func denyDeletionOf(t *testing.T, g Gomega, obj client.Object) (allow func()) {
	t.Helper()
	name := "deny-delete-" + obj.GetName()
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Delete},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"}},
				},
			}}},
			Validations: []admissionv1.Validation{{
				Expression: "oldObject.metadata.name != '" + obj.GetName() + "'",
				Message:    "deletion held by a test policy",
			}},
		},
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName: name, ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
		},
	}
	g.Expect(k8s.Create(ctx, policy)).To(Succeed())
	g.Expect(k8s.Create(ctx, binding)).To(Succeed())
	// A policy is enforced a moment after it is created.
	g.Eventually(func() bool {
		err := k8s.Delete(ctx, obj.DeepCopyObject().(client.Object), client.DryRunAll)
		return apierrors.IsInvalid(err) || apierrors.IsForbidden(err)
	}, timeout, interval).Should(BeTrue())
	removed := false
	allow = func() {
		if removed {
			return
		}
		removed = true
		g.Expect(client.IgnoreNotFound(k8s.Delete(ctx, binding))).To(Succeed())
		g.Expect(client.IgnoreNotFound(k8s.Delete(ctx, policy))).To(Succeed())
	}
	t.Cleanup(allow)
	return allow
}

// The sweep destroys the data key of a Tenant that vanished without its
// erasure (its namespace gone too, say), after the grace period counted from
// discovery, and never a live tenant's key.
func TestTheSweepDestroysTheKeyOfAVanishedTenant(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	live := provisioned(t, g, "key-alive", 24*time.Hour)
	liveKey := keyOf(g, live)

	uid := types.UID("5e0a1c2d-0000-4000-8000-000000000017")
	data, err := datakey.NewSecretData(rand.Reader, nil)
	g.Expect(err).NotTo(HaveOccurred())
	ghost := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: operatorNamespace, Name: controllers.DataKeySecretName("ghost", uid),
			Labels: map[string]string{
				platformv1.LabelTenant: "ghost", platformv1.LabelManagedBy: platformv1.ManagedByValue, "app.kubernetes.io/component": "data-key",
			},
			Annotations: map[string]string{controllers.AnnotationTenantUID: string(uid)},
		},
		Data: data,
	}
	g.Expect(k8s.Create(ctx, ghost)).To(Succeed())

	found := clock.Now().UTC().Truncate(time.Second)
	g.Eventually(func(g Gomega) {
		g.Expect(orphanedAt(g, ghost)).To(Equal(found.Format(time.RFC3339)))
		g.Expect(metricValue(g, "omniflow_orphans", "kind", "data-key")).To(Equal(1.0))
	}, timeout, interval).Should(Succeed())
	clock.SetTime(found.Add(orphanGrace - time.Second))
	g.Consistently(func() error { return k8s.Get(ctx, client.ObjectKeyFromObject(ghost), &corev1.Secret{}) }, 2*time.Second, interval).Should(Succeed())

	clock.SetTime(found.Add(orphanGrace + time.Second))
	g.Eventually(gone(ghost), timeout, interval).Should(BeTrue())
	g.Eventually(func(g Gomega) {
		var evs corev1.EventList
		g.Expect(k8s.List(ctx, &evs, client.InNamespace(operatorNamespace))).To(Succeed())
		var notes []string
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == ghost.Name {
				notes = append(notes, e.Type+" "+e.Reason+": "+e.Message)
			}
		}
		g.Expect(notes).To(ContainElement(And(HavePrefix("Normal ErasureStep: DestroyKey of orphaned Tenant ghost"), ContainSubstring("GET returns NotFound"))))
		g.Expect(notes).To(ContainElement(HavePrefix("Normal Erased: orphaned Secret/" + ghost.Name)))
	}, timeout, interval).Should(Succeed())
	again := keyOf(g, live)
	g.Expect(again.UID).To(Equal(liveKey.UID), "a live tenant's key is never touched")
	g.Expect(again.Annotations).NotTo(HaveKey(controllers.AnnotationOrphanedAt))
}
