package controllers_test

import (
	"context"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
)

func newTenant(name string) *platformv1.Tenant {
	return &platformv1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       platformv1.TenantSpec{DisplayName: "Test " + name},
	}
}

func createTenant(t *testing.T, tn *platformv1.Tenant) {
	t.Helper()
	if err := k8s.Create(context.Background(), tn); err != nil {
		t.Fatalf("create tenant: %v", err)
	}
}

func getTenant(g Gomega, name string) *platformv1.Tenant {
	var tn platformv1.Tenant
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Name: name}, &tn)).To(Succeed())
	return &tn
}

func condition(tn *platformv1.Tenant, typ string) *metav1.Condition {
	return meta.FindStatusCondition(tn.Status.Conditions, typ)
}

// markWorkerUp plays the parts of the PV binder and the Deployment
// controller, which envtest does not run.
func markWorkerUp(g Gomega, ns string) {
	ctx := context.Background()
	var pvc corev1.PersistentVolumeClaim
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.DataClaimName}, &pvc)).To(Succeed())
	pvc.Status.Phase = corev1.ClaimBound
	g.Expect(k8s.Status().Update(ctx, &pvc)).To(Succeed())

	var dep appsv1.Deployment
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &dep)).To(Succeed())
	n := ptr.Deref(dep.Spec.Replicas, 1)
	dep.Status = appsv1.DeploymentStatus{
		ObservedGeneration: dep.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
	}
	g.Expect(k8s.Status().Update(ctx, &dep)).To(Succeed())
}

func TestTenantProvisionsEverythingOwnedAndLabelled(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tn := newTenant("provision")
	createTenant(t, tn)
	ns := "tenant-provision"

	g.Eventually(func(g Gomega) {
		got := getTenant(g, tn.Name)
		g.Expect(got.Status.Namespace).To(Equal(ns))
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseProvisioning))
		ready := condition(got, platformv1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.ObservedGeneration).To(Equal(got.Generation))
		g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		g.Expect(got.Status.GracePeriod.Duration).To(Equal(platformv1.DefaultGracePeriod))
	}, timeout, interval).Should(Succeed())

	var nsObj corev1.Namespace
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: ns}, &nsObj)).To(Succeed())
	g.Expect(nsObj.Labels).To(HaveKeyWithValue(platformv1.LabelTenant, tn.Name))
	g.Expect(nsObj.Labels).To(HaveKeyWithValue(platformv1.LabelManagedBy, platformv1.ManagedByValue))
	g.Expect(nsObj.OwnerReferences).To(BeEmpty(), "the namespace holds the data: garbage collection must never delete it")

	got := getTenant(g, tn.Name)
	key := types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}
	for _, obj := range []client.Object{
		&corev1.ServiceAccount{}, &rbacv1.Role{}, &rbacv1.RoleBinding{}, &networkingv1.NetworkPolicy{},
		&appsv1.Deployment{}, &corev1.Service{},
	} {
		g.Expect(k8s.Get(ctx, key, obj)).To(Succeed(), "%T", obj)
		assertOwnedAndLabelled(g, obj, got)
	}
	var pvc corev1.PersistentVolumeClaim
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.DataClaimName}, &pvc)).To(Succeed())
	assertOwnedAndLabelled(g, &pvc, got)
	g.Expect(pvc.Spec.Resources.Requests.Storage().String()).To(Equal("5Gi"))
	g.Expect(ptr.Deref(pvc.Spec.StorageClassName, "")).To(Equal("standard"), "the manager's default storage class")

	var dep appsv1.Deployment
	g.Expect(k8s.Get(ctx, key, &dep)).To(Succeed())
	pod := dep.Spec.Template.Spec
	g.Expect(pod.Containers).To(HaveLen(1))
	g.Expect(pod.Containers[0].Image).To(Equal(testWorkerImage))
	g.Expect(pod.Containers[0].Args).To(Equal(controllers.WorkerArgs(got)))
	g.Expect(pod.ServiceAccountName).To(Equal(controllers.WorkerName))
	g.Expect(ptr.Deref(pod.SecurityContext.RunAsNonRoot, false)).To(BeTrue())
	g.Expect(dep.Spec.Strategy.Type).To(Equal(appsv1.RecreateDeploymentStrategyType), "SQLite: never two writers")
	g.Expect(pod.Volumes).To(ContainElement(HaveField("VolumeSource.PersistentVolumeClaim.ClaimName", controllers.DataClaimName)))

	var np networkingv1.NetworkPolicy
	g.Expect(k8s.Get(ctx, key, &np)).To(Succeed())
	g.Expect(np.Spec.Ingress).To(HaveLen(1))
	g.Expect(np.Spec.Ingress[0].Ports).To(HaveLen(1))
	g.Expect(np.Spec.Ingress[0].Ports[0].Port.IntValue()).To(Equal(controllers.WebhookPort))
	g.Expect(np.Spec.PodSelector.MatchLabels).To(Equal(dep.Spec.Selector.MatchLabels))

	var role rbacv1.Role
	g.Expect(k8s.Get(ctx, key, &role)).To(Succeed())
	for _, rule := range role.Rules {
		if slices.Contains(rule.Resources, "secrets") {
			if slices.Equal(rule.Verbs, []string{"create"}) {
				// Meta's deletion callback stores the identifier it receives.
				g.Expect(rule.ResourceNames).To(BeEmpty(), "create cannot be limited by name")
				continue
			}
			g.Expect(rule.ResourceNames).To(Equal([]string{platformv1.SubjectKeySecretName}), "no channel yet: only the subject key is readable")
		}
		g.Expect(rule.Verbs).NotTo(ContainElement("*"))
	}
	g.Expect(role.Rules).To(ContainElement(And(
		HaveField("Resources", Equal([]string{"secrets"})), HaveField("Verbs", Equal([]string{"create"})))),
		"the worker files Meta's deletion requests with the identifier in a Secret it creates")
	g.Expect(role.Rules).To(ContainElement(And(HaveField("APIGroups", Equal([]string{"events.k8s.io"})),
		HaveField("Resources", Equal([]string{"events"})), HaveField("Verbs", Equal([]string{"create"})))),
		"the worker reports on a MetaChannel whose business left")

	// The subject key: random, immutable, the tenant's.
	var subjectKey corev1.Secret
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: platformv1.SubjectKeySecretName}, &subjectKey)).To(Succeed())
	g.Expect(subjectKey.Data[platformv1.SubjectKeySecretKey]).To(HaveLen(32))
	g.Expect(ptr.Deref(subjectKey.Immutable, false)).To(BeTrue())
	assertOwnedAndLabelled(g, &subjectKey, got)

	// Until the claim is bound and the worker available, the tenant is not Ready.
	g.Expect(condition(got, platformv1.ConditionWorkerReady).Status).To(Equal(metav1.ConditionFalse))
	markWorkerUp(g, ns)
	g.Eventually(func(g Gomega) {
		got := getTenant(g, tn.Name)
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseActive))
		ready := condition(got, platformv1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(condition(got, platformv1.ConditionStorageReady).Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())

	// One Event for the whole provisioning: Provisioned, once Ready. The
	// children's creation is no Event (it was ten per tenant).
	g.Eventually(func(g Gomega) {
		g.Expect(provisioningEvents(g, tn.Name, ns)).To(ConsistOf(And(
			HaveField("Type", corev1.EventTypeNormal), HaveField("Reason", controllers.ReasonProvisioned))))
	}, timeout, interval).Should(Succeed())
	// A pass after Ready (an annotation asks for one) adds none.
	reconcilesBefore := reconcileCount(g)
	got = getTenant(g, tn.Name)
	patch := client.MergeFrom(got.DeepCopy())
	got.Annotations = map[string]string{controllers.ReconcileAnnotation: "again"}
	g.Expect(k8s.Patch(ctx, got, patch)).To(Succeed())
	g.Eventually(func() float64 { return reconcileCount(g) }, timeout, interval).Should(BeNumerically(">", reconcilesBefore))
	g.Expect(provisioningEvents(g, tn.Name, ns)).To(HaveLen(1))
}

// provisioningEvents are the Events about a Tenant and the objects in its
// namespace.
// provisioningEvents lists the operator's Events about the tenant or
// anything in its namespace. Events other components report are left out:
// the API server's own Service IP repair loop may warn about a Service it
// saw mid-creation, which says nothing of the operator.
func provisioningEvents(g Gomega, tenant, ns string) []eventsv1.Event {
	var evs eventsv1.EventList
	g.Expect(k8s.List(context.Background(), &evs)).To(Succeed())
	var out []eventsv1.Event
	for _, e := range evs.Items {
		if e.ReportingController != "omniflow-operator" {
			continue
		}
		if (e.Regarding.Kind == "Tenant" && e.Regarding.Name == tenant) || e.Regarding.Namespace == ns {
			out = append(out, e)
		}
	}
	return out
}

func assertOwnedAndLabelled(g Gomega, obj client.Object, tn *platformv1.Tenant) {
	g.Expect(obj.GetLabels()).To(HaveKeyWithValue(platformv1.LabelTenant, tn.Name), "%T", obj)
	g.Expect(obj.GetLabels()).To(HaveKeyWithValue(platformv1.LabelManagedBy, platformv1.ManagedByValue), "%T", obj)
	owner := metav1.GetControllerOf(obj)
	g.Expect(owner).NotTo(BeNil(), "%T has no controller owner", obj)
	g.Expect(owner.Kind).To(Equal("Tenant"))
	g.Expect(owner.UID).To(Equal(tn.UID))
}

// waitSettled waits until the manager has made no write for a while.
func waitSettled(g Gomega) int {
	var last int
	g.Eventually(func() bool {
		n, _ := mgrWrites.snapshot()
		if n == last {
			return true
		}
		last = n
		return false
	}, timeout, time.Second).Should(BeTrue(), "the manager kept writing")
	return last
}

func TestUnchangedTenantCausesNoWrites(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tn := newTenant("idle")
	createTenant(t, tn)
	ns := "tenant-idle"
	g.Eventually(func(g Gomega) {
		markWorkerUp(g, ns)
		g.Expect(getTenant(g, tn.Name).Status.Phase).To(Equal(platformv1.TenantPhaseActive))
	}, timeout, interval).Should(Succeed())

	before := waitSettled(g)
	reconcilesBefore := reconcileCount(g)

	// Touch an owned object in a way that is not ours: the Tenant is reconciled
	// again, and finds nothing to change.
	var svc corev1.Service
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &svc)).To(Succeed())
	patch := client.MergeFrom(svc.DeepCopy())
	svc.Annotations = map[string]string{"example.test/touched": "yes"}
	g.Expect(k8s.Patch(ctx, &svc, patch)).To(Succeed())

	g.Eventually(func() float64 { return reconcileCount(g) }, timeout, interval).Should(BeNumerically(">", reconcilesBefore))
	after := waitSettled(g)
	_, paths := mgrWrites.snapshot()
	g.Expect(after).To(Equal(before), "writes after the unchanged reconcile: %v", paths[before:])
}

func TestTenantChangesReachTheWorker(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tn := newTenant("resize")
	createTenant(t, tn)
	key := types.NamespacedName{Namespace: "tenant-resize", Name: controllers.WorkerName}
	g.Eventually(func() error { return k8s.Get(ctx, key, &appsv1.Deployment{}) }, timeout, interval).Should(Succeed())

	got := getTenant(g, tn.Name)
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.Worker.Replicas = ptr.To[int32](0)
	got.Spec.Worker.Resources = &corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("300Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	got.Spec.Worker.Image = "example.test/omniflow/ingest-worker:pinned"
	g.Expect(k8s.Patch(ctx, got, patch)).To(Succeed())

	g.Eventually(func(g Gomega) {
		var dep appsv1.Deployment
		g.Expect(k8s.Get(ctx, key, &dep)).To(Succeed())
		g.Expect(ptr.Deref(dep.Spec.Replicas, -1)).To(Equal(int32(0)))
		c := dep.Spec.Template.Spec.Containers[0]
		g.Expect(c.Image).To(Equal("example.test/omniflow/ingest-worker:pinned"))
		g.Expect(c.Resources.Requests.Memory().String()).To(Equal("300Mi"))
		g.Expect(c.Resources.Limits.Memory().String()).To(Equal("1Gi"))
		g.Expect(c.Resources.Requests.Cpu().IsZero()).To(BeTrue(), "the default CPU request is replaced, not merged")
	}, timeout, interval).Should(Succeed())
}

func TestDeletedChildrenAreRecreated(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tn := newTenant("heal")
	createTenant(t, tn)
	ns := "tenant-heal"
	key := types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}

	for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &rbacv1.Role{}, &networkingv1.NetworkPolicy{}} {
		g.Eventually(func() error { return k8s.Get(ctx, key, obj) }, timeout, interval).Should(Succeed(), "%T", obj)
		oldUID := obj.GetUID()
		g.Expect(k8s.Delete(ctx, obj)).To(Succeed())
		g.Eventually(func(g Gomega) {
			fresh := obj.DeepCopyObject().(client.Object)
			g.Expect(k8s.Get(ctx, key, fresh)).To(Succeed())
			g.Expect(fresh.GetUID()).NotTo(Equal(oldUID))
		}, timeout, interval).Should(Succeed(), "%T not recreated", obj)
	}
}

func TestForeignNamespaceIsNeverTakenOver(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	foreign := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   "tenant-squatted",
		Labels: map[string]string{"team": "someone-else"},
	}}
	g.Expect(k8s.Create(ctx, foreign)).To(Succeed())

	tn := newTenant("squatted")
	createTenant(t, tn)
	g.Eventually(func(g Gomega) {
		got := getTenant(g, tn.Name)
		ready := condition(got, platformv1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(platformv1.ReasonNamespaceConflict))
		g.Expect(ready.Message).To(ContainSubstring("tenant-squatted"))
		g.Expect(condition(got, platformv1.ConditionNamespaceReady).Reason).To(Equal(platformv1.ReasonNamespaceConflict))
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseFailed))
	}, timeout, interval).Should(Succeed())

	g.Eventually(func(g Gomega) {
		var evs eventsv1.EventList
		g.Expect(k8s.List(ctx, &evs)).To(Succeed())
		g.Expect(evs.Items).To(ContainElement(And(
			HaveField("Regarding.Name", tn.Name),
			HaveField("Type", corev1.EventTypeWarning),
			HaveField("Reason", platformv1.ReasonNamespaceConflict))))
	}, timeout, interval).Should(Succeed())

	// Nothing was put in it, and its labels are untouched.
	g.Consistently(func(g Gomega) {
		var dep appsv1.DeploymentList
		g.Expect(k8s.List(ctx, &dep, client.InNamespace("tenant-squatted"))).To(Succeed())
		g.Expect(dep.Items).To(BeEmpty())
		var pvcs corev1.PersistentVolumeClaimList
		g.Expect(k8s.List(ctx, &pvcs, client.InNamespace("tenant-squatted"))).To(Succeed())
		g.Expect(pvcs.Items).To(BeEmpty())
		var ns corev1.Namespace
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: "tenant-squatted"}, &ns)).To(Succeed())
		g.Expect(ns.Labels).NotTo(HaveKey(platformv1.LabelTenant))
	}, 2*time.Second, 200*time.Millisecond).Should(Succeed())

	// The namespace's owner labels it for the tenant: it is adopted.
	var ns corev1.Namespace
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: "tenant-squatted"}, &ns)).To(Succeed())
	patch := client.MergeFrom(ns.DeepCopy())
	ns.Labels[platformv1.LabelTenant] = tn.Name
	g.Expect(k8s.Patch(ctx, &ns, patch)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getTenant(g, tn.Name)
		g.Expect(condition(got, platformv1.ConditionNamespaceReady).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseProvisioning))
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: "tenant-squatted", Name: controllers.WorkerName}, &appsv1.Deployment{})).To(Succeed())
	}, timeout, interval).Should(Succeed())
}

func TestNamespaceOfAnotherTenantIsNotShared(t *testing.T) {
	g := NewWithT(t)
	first := newTenant("owner-a")
	first.Spec.Namespace = "shared-ns"
	createTenant(t, first)
	g.Eventually(func(g Gomega) {
		g.Expect(condition(getTenant(g, first.Name), platformv1.ConditionNamespaceReady)).To(HaveField("Status", metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())

	second := newTenant("owner-b")
	second.Spec.Namespace = "shared-ns"
	createTenant(t, second)
	g.Eventually(func(g Gomega) {
		c := condition(getTenant(g, second.Name), platformv1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(platformv1.ReasonNamespaceConflict))
	}, timeout, interval).Should(Succeed())
	var ns corev1.Namespace
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Name: "shared-ns"}, &ns)).To(Succeed())
	g.Expect(ns.Labels).To(HaveKeyWithValue(platformv1.LabelTenant, first.Name))
}

func TestRoleGrantsOnlyReferencedSecrets(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tn := newTenant("secrets")
	createTenant(t, tn)
	ns := "tenant-secrets"
	g.Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &rbacv1.Role{})
	}, timeout, interval).Should(Succeed())

	ch := &platformv1.MetaChannel{
		ObjectMeta: metav1.ObjectMeta{Name: "wa", Namespace: ns},
		Spec: platformv1.MetaChannelSpec{
			Platform:       platformv1.PlatformWhatsApp,
			WhatsApp:       &platformv1.WhatsAppChannel{PhoneNumberID: "1065", BusinessAccountID: "1022"},
			AppSecretRef:   &platformv1.SecretKeyRef{Name: "meta-app", Key: "appSecret"},
			VerifyTokenRef: &platformv1.SecretKeyRef{Name: "meta-verify", Key: "token"},
		},
	}
	g.Expect(k8s.Create(ctx, ch)).To(Succeed())
	g.Eventually(func(g Gomega) {
		var role rbacv1.Role
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &role)).To(Succeed())
		var secretRules []rbacv1.PolicyRule
		for _, r := range role.Rules {
			if len(r.Resources) == 1 && r.Resources[0] == "secrets" && !slices.Equal(r.Verbs, []string{"create"}) {
				secretRules = append(secretRules, r)
			}
		}
		g.Expect(secretRules).To(HaveLen(1))
		g.Expect(secretRules[0].ResourceNames).To(Equal([]string{"meta-app", "meta-verify", platformv1.SubjectKeySecretName}))
	}, timeout, interval).Should(Succeed())

	// An accepted deletion request's subject Secret is readable; a finished one's
	// is not, nor is a Secret of another type that a request names.
	for name, typ := range map[string]corev1.SecretType{"subject-forget-me": platformv1.SubjectSecretType, "not-a-subject": corev1.SecretTypeOpaque} {
		g.Expect(k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Type: typ, StringData: map[string]string{"id": "15550100999"},
		})).To(Succeed())
	}
	request := func(name, secret string) *platformv1.DeletionRequest {
		return &platformv1.DeletionRequest{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: platformv1.DeletionRequestSpec{
				Platform:         platformv1.PlatformWhatsApp,
				SubjectSecretRef: platformv1.SecretKeyRef{Name: secret, Key: "id"},
			},
		}
	}
	dr, other := request("forget-me", "subject-forget-me"), request("read-that", "not-a-subject")
	g.Expect(k8s.Create(ctx, other)).To(Succeed())
	g.Expect(k8s.Create(ctx, dr)).To(Succeed())
	g.Eventually(func(g Gomega) {
		var role rbacv1.Role
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &role)).To(Succeed())
		g.Expect(role.Rules).To(ContainElement(HaveField("ResourceNames", ContainElement("subject-forget-me"))))
		g.Expect(role.Rules).NotTo(ContainElement(HaveField("ResourceNames", ContainElement("not-a-subject"))))
	}, timeout, interval).Should(Succeed())
	g.Expect(k8s.Delete(ctx, dr)).To(Succeed())
	g.Expect(k8s.Delete(ctx, other)).To(Succeed())

	g.Expect(k8s.Delete(ctx, ch)).To(Succeed())
	g.Eventually(func(g Gomega) {
		var role rbacv1.Role
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &role)).To(Succeed())
		for _, r := range role.Rules {
			if slices.Contains(r.Resources, "secrets") && !slices.Equal(r.Verbs, []string{"create"}) {
				g.Expect(r.ResourceNames).To(Equal([]string{platformv1.SubjectKeySecretName}))
			}
		}
	}, timeout, interval).Should(Succeed())
}
