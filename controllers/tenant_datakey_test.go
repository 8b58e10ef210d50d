package controllers_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/healthtable"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

// dataKey waits for the tenant's key Secret in the operator's namespace.
func dataKey(g Gomega, tn *platformv1.Tenant) *corev1.Secret {
	key := types.NamespacedName{Namespace: operatorNamespace, Name: controllers.DataKeySecretName(tn.Name, tn.UID)}
	var s corev1.Secret
	g.Eventually(func() error { return k8s.Get(context.Background(), key, &s) }, timeout, interval).Should(Succeed())
	return &s
}

// tenantEvents are "Type Reason: note" of the Events about Tenant name.
func tenantEvents(g Gomega, name string) []string {
	var evs eventsv1.EventList
	g.Expect(k8s.List(context.Background(), &evs)).To(Succeed())
	var out []string
	for _, e := range evs.Items {
		if e.Regarding.Kind == "Tenant" && e.Regarding.Name == name {
			out = append(out, e.Type+" "+e.Reason+": "+e.Note)
		}
	}
	return out
}

// pokeTenant asks for a pass and waits until one has run.
func pokeTenant(g Gomega, name string) {
	before := reconcileCount(g)
	tn := getTenant(g, name)
	patch := client.MergeFrom(tn.DeepCopy())
	if tn.Annotations == nil {
		tn.Annotations = map[string]string{}
	}
	tn.Annotations[controllers.ReconcileAnnotation] = time.Now().Format(time.RFC3339Nano)
	g.Expect(k8s.Patch(context.Background(), tn, patch)).To(Succeed())
	g.Eventually(func() float64 { return reconcileCount(g) }, timeout, interval).Should(BeNumerically(">", before))
}

func TestATenantsDataKeyIsMadeOnceOutsideItsNamespaceAndOnlyItsWorkerMayReadIt(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tn := newTenant("keyed")
	createTenant(t, tn)
	tn = getTenant(g, tn.Name)
	secret := dataKey(g, tn)

	// A ring of one 256-bit version and the index key, bound to the Tenant's
	// UID by the mark, with no owner reference for garbage collection to follow.
	ring, err := datakey.Parse(secret.Data, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ring.ActiveVersion()).To(Equal(datakey.Version(1)))
	g.Expect(secret.Data["key-1"]).To(HaveLen(32))
	g.Expect(secret.OwnerReferences).To(BeEmpty())
	g.Expect(secret.Annotations).To(HaveKeyWithValue(controllers.AnnotationTenantUID, string(tn.UID)))
	g.Expect(secret.Labels).To(HaveKeyWithValue(platformv1.LabelTenant, tn.Name))
	g.Expect(secret.Name).To(ContainSubstring(tn.Name))

	// Only the tenant's worker is granted it, by name.
	var role rbacv1.Role
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(secret), &role)).To(Succeed())
	g.Expect(role.Rules).To(HaveLen(1))
	g.Expect(role.Rules[0].ResourceNames).To(Equal([]string{secret.Name}))
	g.Expect(role.Rules[0].Resources).To(Equal([]string{"secrets"}))
	g.Expect(role.Rules[0].Verbs).To(ConsistOf("get", "list", "watch"))
	var rb rbacv1.RoleBinding
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(secret), &rb)).To(Succeed())
	g.Expect(rb.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: controllers.WorkerName, Namespace: tn.NamespaceName()}))

	// The worker is told where its key is; the status says which version is in force.
	g.Eventually(func(g Gomega) {
		var dep appsv1.Deployment
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: tn.NamespaceName(), Name: controllers.WorkerName}, &dep)).To(Succeed())
		g.Expect(dep.Spec.Template.Spec.Containers[0].Env).To(ContainElement(corev1.EnvVar{
			Name: controllers.EnvDataKeySecret, Value: operatorNamespace + "/" + secret.Name,
		}))
		enc := getTenant(g, tn.Name).Status.Encryption
		g.Expect(enc).NotTo(BeNil())
		g.Expect(enc.KeySecret).To(Equal(operatorNamespace + "/" + secret.Name))
		g.Expect(enc.KeyVersion).To(Equal(int32(1)))
	}, timeout, interval).Should(Succeed())

	// Nothing in the tenant's namespace, the Tenant or its Events holds the key.
	var inTenantNS corev1.SecretList
	g.Expect(k8s.List(ctx, &inTenantNS, client.InNamespace(tn.NamespaceName()))).To(Succeed())
	for _, s := range inTenantNS.Items {
		for k, v := range s.Data {
			g.Expect(bytes.Contains(v, secret.Data["key-1"]) || strings.Contains(string(v), hex.EncodeToString(secret.Data["key-1"]))).
				To(BeFalse(), "Secret %s key %s holds the data key", s.Name, k)
		}
	}
	raw, err := json.Marshal(getTenant(g, tn.Name))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(raw)).NotTo(ContainSubstring(hex.EncodeToString(secret.Data["key-1"])))
	g.Expect(string(raw)).NotTo(ContainSubstring(base64.StdEncoding.EncodeToString(secret.Data["key-1"])))

	// Made once: later passes never replace it.
	pokeTenant(g, tn.Name)
	g.Consistently(func(g Gomega) {
		again := dataKey(g, tn)
		g.Expect(again.UID).To(Equal(secret.UID))
		g.Expect(again.ResourceVersion).To(Equal(secret.ResourceVersion))
	}, 2*time.Second, interval).Should(Succeed())
}

func TestARotationTokenAddsOneKeyVersionAndKeepsTheOldOnes(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tn := newTenant("rotating")
	createTenant(t, tn)
	tn = getTenant(g, tn.Name)
	first := dataKey(g, tn)
	old, err := datakey.Parse(first.Data, nil)
	g.Expect(err).NotTo(HaveOccurred())
	id := datakey.Identity("messages", "m1")
	sealed, err := old.Seal([]byte("sealed before the rotation"), id)
	g.Expect(err).NotTo(HaveOccurred())

	rotate := func(token string) {
		got := getTenant(g, tn.Name)
		patch := client.MergeFrom(got.DeepCopy())
		got.Spec.Encryption.RotationToken = token
		g.Expect(k8s.Patch(ctx, got, patch)).To(Succeed())
	}
	rotate("2026-q4")
	var rotated *corev1.Secret
	g.Eventually(func(g Gomega) {
		rotated = dataKey(g, tn)
		g.Expect(string(rotated.Data[datakey.ActiveKey])).To(Equal("2"))
		enc := getTenant(g, tn.Name).Status.Encryption
		g.Expect(enc).NotTo(BeNil())
		g.Expect(enc.KeyVersion).To(Equal(int32(2)))
		g.Expect(enc.RotationToken).To(Equal("2026-q4"))
	}, timeout, interval).Should(Succeed())
	g.Expect(rotated.Data["key-1"]).To(Equal(first.Data["key-1"]), "the old version stays")
	g.Expect(rotated.Data[datakey.IndexKey]).To(Equal(first.Data[datakey.IndexKey]), "the index key never rotates")
	g.Expect(rotated.Data["key-2"]).To(HaveLen(32))
	g.Expect(rotated.Data["key-2"]).NotTo(Equal(first.Data["key-1"]))
	ring, err := datakey.Parse(rotated.Data, nil)
	g.Expect(err).NotTo(HaveOccurred())
	plain, err := ring.Open(sealed, id)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(plain)).To(Equal("sealed before the rotation"))
	g.Eventually(func(g Gomega) {
		g.Expect(tenantEvents(g, tn.Name)).To(ContainElement(HavePrefix("Normal KeyRotated: data key rotated to version 2")))
	}, timeout, interval).Should(Succeed())

	// The same token again rotates nothing.
	pokeTenant(g, tn.Name)
	g.Consistently(func(g Gomega) {
		g.Expect(dataKey(g, tn).ResourceVersion).To(Equal(rotated.ResourceVersion))
	}, 2*time.Second, interval).Should(Succeed())

	// A new token, one more version.
	rotate("2027-q1")
	g.Eventually(func(g Gomega) {
		s := dataKey(g, tn)
		g.Expect(string(s.Data[datakey.ActiveKey])).To(Equal("3"))
		g.Expect(s.Data).To(HaveKey("key-1"))
		g.Expect(s.Data).To(HaveKey("key-2"))
		g.Expect(getTenant(g, tn.Name).Status.Encryption.KeyVersion).To(Equal(int32(3)))
	}, timeout, interval).Should(Succeed())
}

func TestALostDataKeyIsReportedAndNeverMadeAgain(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tn := newTenant("key-lost")
	createTenant(t, tn)
	tn = getTenant(g, tn.Name)
	secret := dataKey(g, tn)
	g.Eventually(func(g Gomega) {
		g.Expect(getTenant(g, tn.Name).Status.Encryption).NotTo(BeNil())
	}, timeout, interval).Should(Succeed())

	g.Expect(k8s.Delete(ctx, secret)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getTenant(g, tn.Name)
		c := condition(got, platformv1.ConditionStorageReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(platformv1.ReasonDataKeyMissing))
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseFailed))
		g.Expect(tenantEvents(g, tn.Name)).To(ContainElement(HavePrefix("Warning DataKeyMissing: ")))
	}, timeout, interval).Should(Succeed())
	key := client.ObjectKeyFromObject(secret)
	g.Consistently(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, key, &corev1.Secret{}))
	}, 2*time.Second, interval).Should(BeTrue(), "a new key would silently make the old data unreadable")

	// Restored from a backup, it is in force again.
	restored := &corev1.Secret{}
	restored.Name, restored.Namespace = secret.Name, secret.Namespace
	restored.Labels, restored.Annotations, restored.Data = secret.Labels, secret.Annotations, secret.Data
	g.Expect(k8s.Create(ctx, restored)).To(Succeed())
	g.Eventually(func(g Gomega) {
		c := condition(getTenant(g, tn.Name), platformv1.ConditionStorageReady)
		g.Expect(c.Reason).NotTo(Equal(platformv1.ReasonDataKeyMissing))
	}, timeout, interval).Should(Succeed())
}

// The worker's encryption report becomes status.encryption: sealedVersion as the worker
// reported it, fullyEncrypted when it is the key version in force. A store still being
// encrypted (data from before encryption, or records under the version before a
// rotation) leaves the tenant Ready and kstatus Current: the pass runs beside ingest.
func TestTheWorkersEncryptionReportIsTheTenantsEncryptionStatus(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tn := newTenant("enc-report")
	createTenant(t, tn)
	ns := tn.NamespaceName()
	g.Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &appsv1.Deployment{})
	}, timeout, interval).Should(Succeed())
	markWorkerUp(g, ns)
	rep := &workerreport.EncryptionReporter{Client: workerClient(g, ns), Namespace: ns}
	report := func(active, sealed datakey.Version) {
		g.Eventually(func() error {
			return rep.Report(ctx, store.EncryptionState{Encrypts: true, ActiveVersion: active, SealedVersion: sealed})
		}, timeout, interval).Should(Succeed())
	}
	expect := func(keyVersion, sealed int32, full bool, why string) {
		g.Eventually(func(g Gomega) {
			got := getTenant(g, tn.Name)
			g.Expect(got.Status.Encryption).NotTo(BeNil())
			g.Expect(got.Status.Encryption.KeyVersion).To(Equal(keyVersion))
			g.Expect(got.Status.Encryption.SealedVersion).To(Equal(sealed))
			g.Expect(got.Status.Encryption.FullyEncrypted).To(Equal(full))
			g.Expect(condition(got, platformv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
			g.Expect(healthtable.Check(got)).To(Succeed())
		}, timeout, interval).Should(Succeed(), why)
	}

	// A store that held data before encryption: its pass is under way.
	report(1, 0)
	expect(1, 0, false, "a pass under way: not fully encrypted, and Ready")
	report(1, 1)
	expect(1, 1, true, "the pass completed")

	// A rotation: until the worker's pass reached version 2, the tenant is not fully
	// encrypted, whatever the last report said.
	got := getTenant(g, tn.Name)
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.Encryption.RotationToken = "2026-12"
	g.Expect(k8s.Patch(ctx, got, patch)).To(Succeed())
	expect(2, 1, false, "rotated: records under version 1 remain")

	// A report of a version the key does not have is not believed.
	report(3, 3)
	pokeTenant(g, tn.Name)
	expect(2, 1, false, "a version beyond the key's is ignored")

	report(2, 2)
	expect(2, 2, true, "the pass after the rotation completed")
}
