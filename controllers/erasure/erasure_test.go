package erasure_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

const (
	timeout  = 60 * time.Second
	interval = 200 * time.Millisecond
	day      = 24 * time.Hour
)

var ctx = context.Background()

// provisioned creates a tenant with the given grace period, waits for its
// objects, binds its claim to a volume whose reclaim policy is Retain (the
// case that silently keeps data), and puts a channel, a Secret and a
// deletion request in its namespace.
func provisioned(t *testing.T, g Gomega, name string, grace time.Duration) *platformv1.Tenant {
	t.Helper()
	return provisionedIn(t, g, name, "", grace)
}

// provisionedIn is provisioned with spec.namespace set (empty: the default).
func provisionedIn(t *testing.T, g Gomega, name, namespace string, grace time.Duration) *platformv1.Tenant {
	t.Helper()
	tn := &platformv1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: platformv1.TenantSpec{
			Namespace: namespace,
			Erasure:   platformv1.ErasurePolicy{GracePeriod: &metav1.Duration{Duration: grace}},
		},
	}
	g.Expect(k8s.Create(ctx, tn)).To(Succeed())
	ns := tn.NamespaceName()
	var pvc corev1.PersistentVolumeClaim
	g.Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.DataClaimName}, &pvc)
	}, timeout, interval).Should(Succeed())
	g.Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &appsv1.Deployment{})
	}, timeout, interval).Should(Succeed())

	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-" + name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/omniflow-test/" + name},
			},
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: pvc.Name, UID: pvc.UID},
		},
	}
	g.Expect(k8s.Create(ctx, pv)).To(Succeed())
	g.Eventually(func(g Gomega) {
		var got corev1.PersistentVolumeClaim
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&pvc), &got)).To(Succeed())
		g.Expect(got.Status.Phase).To(Equal(corev1.ClaimBound), "kube-controller-manager binds the claim")
		g.Expect(got.Spec.VolumeName).To(Equal(pv.Name))
	}, timeout, interval).Should(Succeed())
	// The operator records the bound volume while the tenant is active.
	poke(g, name)
	g.Eventually(func(g Gomega) {
		got := tenant(g, name)
		g.Expect(got.Status.Storage).NotTo(BeNil())
		g.Expect(got.Status.Storage.VolumeName).To(Equal(pv.Name))
	}, timeout, interval).Should(Succeed())

	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "meta-app", Namespace: ns},
		StringData: map[string]string{"appSecret": "s3cret", "verifyToken": "tok"},
	}
	g.Expect(k8s.Create(ctx, secret)).To(Succeed())
	ch := &platformv1.MetaChannel{
		ObjectMeta: metav1.ObjectMeta{Name: "wa", Namespace: ns},
		Spec: platformv1.MetaChannelSpec{
			Platform:       platformv1.PlatformWhatsApp,
			WhatsApp:       &platformv1.WhatsAppChannel{PhoneNumberID: "1" + strings.Repeat("0", len(name)), BusinessAccountID: "2"},
			AppSecretRef:   &platformv1.SecretKeyRef{Name: "meta-app", Key: "appSecret"},
			VerifyTokenRef: &platformv1.SecretKeyRef{Name: "meta-app", Key: "verifyToken"},
		},
	}
	g.Expect(k8s.Create(ctx, ch)).To(Succeed())
	return tenant(g, name)
}

func tenant(g Gomega, name string) *platformv1.Tenant {
	var tn platformv1.Tenant
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: name}, &tn)).To(Succeed())
	return &tn
}

// poke asks for a reconcile: the fake clock moves, but nothing in the API
// server does, and the operator's timers run on real time.
func poke(g Gomega, name string) {
	tn := tenant(g, name)
	patch := client.MergeFrom(tn.DeepCopy())
	if tn.Annotations == nil {
		tn.Annotations = map[string]string{}
	}
	tn.Annotations[controllers.ReconcileAnnotation] = time.Now().Format(time.RFC3339Nano)
	g.Expect(k8s.Patch(ctx, tn, patch)).To(Succeed())
}

func setState(g Gomega, name string, state platformv1.TenantState) {
	tn := tenant(g, name)
	patch := client.MergeFrom(tn.DeepCopy())
	tn.Spec.State = state
	g.Expect(k8s.Patch(ctx, tn, patch)).To(Succeed())
}

func gone(obj client.Object) func() bool {
	return func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj))
	}
}

func cond(tn *platformv1.Tenant, typ string) *metav1.Condition {
	return meta.FindStatusCondition(tn.Status.Conditions, typ)
}

func stepNames(tn *platformv1.Tenant) []string {
	var out []string
	for _, s := range tn.Status.Erasure {
		if s.CompletedAt != nil {
			out = append(out, s.Name)
		}
	}
	return out
}

func TestDeactivatedTenantIsErasedAtTheScheduledTimeAndNotBefore(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	tn := provisioned(t, g, "erase-on-time", 72*time.Hour)
	ns := tn.NamespaceName()
	var ingresses networkingv1.IngressList
	g.Expect(k8s.List(ctx, &ingresses, client.InNamespace(ns))).To(Succeed())
	g.Expect(ingresses.Items).To(HaveLen(1), "an active tenant has a route")
	deactivatedAt := clock.Now().UTC().Truncate(time.Second)
	setState(g, tn.Name, platformv1.TenantDeactivated)

	// At once: the schedule is recorded and ingest stops.
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseDeactivated))
		g.Expect(got.Status.DeactivatedAt.Time).To(BeTemporally("==", deactivatedAt))
		g.Expect(got.Status.ErasureScheduledAt.Time).To(BeTemporally("==", deactivatedAt.Add(72*time.Hour)))
		g.Expect(got.Status.ErasureDeadline.Time).To(BeTemporally("==", deactivatedAt.Add(14*day)))
		g.Expect(stepNames(got)).To(Equal([]string{"StopIngest"}))
		var dep appsv1.Deployment
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &dep)).To(Succeed())
		g.Expect(ptr.Deref(dep.Spec.Replicas, 1)).To(Equal(int32(0)))
		g.Expect(k8s.List(ctx, &ingresses, client.InNamespace(ns))).To(Succeed())
		g.Expect(ingresses.Items).To(BeEmpty(), "Meta's route goes at once")
	}, timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(eventsAbout(g, tn.Name)).To(ContainElement(And(HavePrefix("Normal Deactivated: "),
			ContainSubstring(deactivatedAt.Add(72*time.Hour).Format(time.RFC3339)))))
	}, timeout, interval).Should(Succeed())

	// A second before the scheduled time nothing is erased.
	clock.SetTime(deactivatedAt.Add(72*time.Hour - time.Second))
	poke(g, tn.Name)
	g.Consistently(func(g Gomega) {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{})).To(Succeed())
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.DataClaimName}, &corev1.PersistentVolumeClaim{})).To(Succeed())
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: "pv-erase-on-time"}, &corev1.PersistentVolume{})).To(Succeed())
		g.Expect(tenant(g, tn.Name).Status.Phase).To(Equal(platformv1.TenantPhaseDeactivated))
	}, 3*time.Second, interval).Should(Succeed())

	// Past it, everything goes, and each step is verified and recorded.
	clock.SetTime(deactivatedAt.Add(72*time.Hour + time.Second))
	poke(g, tn.Name)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseErased))
		g.Expect(got.Status.ErasedAt).NotTo(BeNil())
		g.Expect(got.Status.ErasedAt.Before(got.Status.ErasureDeadline)).To(BeTrue())
		g.Expect(stepNames(got)).To(Equal([]string{"StopIngest", "DestroyKey", "DeleteWorker", "DeleteStorage", "DeleteNamespace"}))
		for _, s := range got.Status.Erasure {
			g.Expect(s.Verification).NotTo(BeEmpty(), s.Name)
		}
		g.Expect(cond(got, platformv1.ConditionErased)).To(HaveField("Status", metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())
	g.Expect(gone(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})()).To(BeTrue())
	g.Expect(gone(&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-erase-on-time"}})()).To(BeTrue(),
		"a Retain volume must not outlive the erasure")
	got := tenant(g, tn.Name)
	g.Expect(got.Status.Erasure[3].Verification).To(ContainSubstring("pv-erase-on-time"))

	// The record holds no secret or channel data.
	raw, err := json.Marshal(got.Status)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(raw)).NotTo(ContainSubstring("s3cret"))

	// An erased tenant cannot come back.
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.State = platformv1.TenantActive
	err = k8s.Patch(ctx, got, patch)
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
	g.Expect(err.Error()).To(ContainSubstring("an erased tenant cannot be reactivated"))
}

func TestReactivationBeforeTheScheduledTimeCancelsTheErasure(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	tn := provisioned(t, g, "changed-mind", 48*time.Hour)
	start := clock.Now()
	setState(g, tn.Name, platformv1.TenantDeactivated)
	g.Eventually(func(g Gomega) {
		g.Expect(tenant(g, tn.Name).Status.DeactivatedAt).NotTo(BeNil())
	}, timeout, interval).Should(Succeed())

	clock.SetTime(start.Add(24 * time.Hour))
	setState(g, tn.Name, platformv1.TenantActive)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.DeactivatedAt).To(BeNil())
		g.Expect(got.Status.ErasureScheduledAt).To(BeNil())
		g.Expect(got.Status.Erasure).To(BeEmpty())
		g.Expect(cond(got, platformv1.ConditionErasing)).To(BeNil())
		var dep appsv1.Deployment
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: tn.NamespaceName(), Name: controllers.WorkerName}, &dep)).To(Succeed())
		g.Expect(ptr.Deref(dep.Spec.Replicas, 0)).To(Equal(int32(1)), "the worker is back")
	}, timeout, interval).Should(Succeed())

	// Long past the old schedule, nothing is erased.
	clock.SetTime(start.Add(10 * day))
	poke(g, tn.Name)
	g.Consistently(func(g Gomega) {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: tn.NamespaceName()}, &corev1.Namespace{})).To(Succeed())
		g.Expect(tenant(g, tn.Name).Status.Phase).NotTo(Equal(platformv1.TenantPhaseErasing))
	}, 3*time.Second, interval).Should(Succeed())
}

func TestDeletingAnActiveTenantErasesBeforeItGoes(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	tn := provisioned(t, g, "deleted", 24*time.Hour)
	g.Expect(tenant(g, tn.Name).Finalizers).To(ContainElement(platformv1.TenantFinalizer))
	start := clock.Now()
	g.Expect(k8s.Delete(ctx, tn)).To(Succeed())

	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.ErasureScheduledAt).NotTo(BeNil())
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseDeactivated))
	}, timeout, interval).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: tn.Name}, &platformv1.Tenant{})).To(Succeed(), "held by the finalizer")
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: tn.NamespaceName()}, &corev1.Namespace{})).To(Succeed())
	}, 2*time.Second, interval).Should(Succeed())

	clock.SetTime(start.Add(24*time.Hour + time.Minute))
	poke(g, tn.Name)
	g.Eventually(gone(&platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: tn.Name}}), timeout, interval).Should(BeTrue())
	g.Expect(gone(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tn.NamespaceName()}})()).To(BeTrue())
	g.Expect(gone(&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-deleted"}})()).To(BeTrue())
}

// blockNamespaceDeletion puts an object with a finalizer in the namespace:
// the namespace then stays Terminating until it is released.
func blockNamespaceDeletion(g Gomega, ns string) (release func()) {
	free, err := testenv.BlockNamespaceDeletion(ctx, k8s, ns)
	g.Expect(err).NotTo(HaveOccurred())
	return func() { g.Expect(free()).To(Succeed()) }
}

func TestScheduleAndErasureSurviveOperatorRestarts(t *testing.T) {
	g := NewWithT(t)
	op := startOperator(t)
	tn := provisioned(t, g, "restarted", 96*time.Hour)
	start := clock.Now().UTC().Truncate(time.Second)
	release := blockNamespaceDeletion(g, tn.NamespaceName())
	setState(g, tn.Name, platformv1.TenantDeactivated)
	g.Eventually(func(g Gomega) {
		g.Expect(stepNames(tenant(g, tn.Name))).To(Equal([]string{"StopIngest"}))
	}, timeout, interval).Should(Succeed())

	// Restart in the middle of the grace period: the schedule holds.
	op.stop()
	clock.SetTime(start.Add(48 * time.Hour))
	op = startOperator(t)
	poke(g, tn.Name)
	g.Consistently(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.DeactivatedAt.Time).To(BeTemporally("==", start))
		g.Expect(got.Status.ErasureScheduledAt.Time).To(BeTemporally("==", start.Add(96*time.Hour)))
		g.Expect(stepNames(got)).To(Equal([]string{"StopIngest"}))
	}, 2*time.Second, interval).Should(Succeed())

	// Past the schedule the erasure runs until the namespace is stuck...
	clock.SetTime(start.Add(96*time.Hour + time.Second))
	poke(g, tn.Name)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(stepNames(got)).To(Equal([]string{"StopIngest", "DestroyKey", "DeleteWorker", "DeleteStorage"}))
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseErasing))
		erasing := cond(got, platformv1.ConditionErasing)
		g.Expect(erasing).NotTo(BeNil())
		g.Expect(erasing.Message).To(ContainSubstring("DeleteNamespace"))
	}, timeout, interval).Should(Succeed())

	// ...and a new operator, started while it is stuck, completes it.
	op.stop()
	release()
	startOperator(t)
	poke(g, tn.Name)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseErased))
		g.Expect(stepNames(got)).To(Equal([]string{"StopIngest", "DestroyKey", "DeleteWorker", "DeleteStorage", "DeleteNamespace"}))
	}, timeout, interval).Should(Succeed())
	g.Expect(gone(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tn.NamespaceName()}})()).To(BeTrue())
}

func TestUnfinishedErasureRaisesTheAlarmADayBeforeTheDeadline(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	tn := provisioned(t, g, "at-risk", 12*day)
	start := clock.Now().UTC().Truncate(time.Second)
	release := blockNamespaceDeletion(g, tn.NamespaceName())
	setState(g, tn.Name, platformv1.TenantDeactivated)
	g.Eventually(func(g Gomega) {
		g.Expect(tenant(g, tn.Name).Status.DeactivatedAt).NotTo(BeNil())
	}, timeout, interval).Should(Succeed())

	clock.SetTime(start.Add(12*day + time.Hour))
	poke(g, tn.Name)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseErasing))
		g.Expect(cond(got, platformv1.ConditionErasureAtRisk)).To(HaveField("Status", metav1.ConditionFalse))
	}, timeout, interval).Should(Succeed())
	g.Expect(overdue(g, tn.Name)).To(Equal(0.0))

	clock.SetTime(start.Add(13*day + time.Hour))
	poke(g, tn.Name)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		c := cond(got, platformv1.ConditionErasureAtRisk)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(overdue(g, tn.Name)).To(Equal(1.0))
		g.Expect(eventsAbout(g, tn.Name)).To(ContainElement(HavePrefix("Warning ErasureAtRisk: erasure is not complete")))
	}, timeout, interval).Should(Succeed())

	release()
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseErased))
		g.Expect(cond(got, platformv1.ConditionErasureAtRisk)).To(BeNil())
	}, timeout, interval).Should(Succeed())
	g.Expect(overdue(g, tn.Name)).To(Equal(-1.0), "the series is gone once erased")
}

// overdue reads omniflow_tenant_erasure_overdue for a tenant; -1 if absent.
func overdue(g Gomega, name string) float64 {
	return metricValue(g, "omniflow_tenant_erasure_overdue", "tenant", name)
}

// eventsAbout lists "Type Reason: note" of the Events regarding a Tenant.
func eventsAbout(g Gomega, name string) []string {
	var evs eventsv1.EventList
	g.Expect(k8s.List(ctx, &evs)).To(Succeed())
	var out []string
	for _, e := range evs.Items {
		if e.Regarding.Kind == "Tenant" && e.Regarding.Name == name {
			out = append(out, e.Type+" "+e.Reason+": "+e.Note)
		}
	}
	return out
}

// Issue 11: the record says what was checked and found. A Tenant pointed at
// a namespace that is not its own, holding objects of the worker's and the
// claim's names, is erased without touching them, and its record names them
// as not the tenant's instead of "not found".
func TestTheRecordNamesForeignObjectsInsteadOfNotFound(t *testing.T) {
	g := NewWithT(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "someone-elses"}}
	g.Expect(k8s.Create(ctx, ns)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	labels := map[string]string{"app": "theirs"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: controllers.WorkerName, Namespace: ns.Name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.test/theirs"}}},
			},
		},
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: controllers.DataClaimName, Namespace: ns.Name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	g.Expect(k8s.Create(ctx, dep)).To(Succeed())
	g.Expect(k8s.Create(ctx, pvc)).To(Succeed())
	startOperator(t)
	tn := &platformv1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: "intruder"},
		Spec: platformv1.TenantSpec{
			Namespace: ns.Name, State: platformv1.TenantDeactivated,
			Erasure: platformv1.ErasurePolicy{GracePeriod: &metav1.Duration{}},
		},
	}
	g.Expect(k8s.Create(ctx, tn)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(tenant(g, tn.Name).Status.Phase).To(Equal(platformv1.TenantPhaseErased))
	}, timeout, interval).Should(Succeed())
	record := map[string]string{}
	for _, s := range tenant(g, tn.Name).Status.Erasure {
		record[s.Name] = s.Verification
	}
	g.Expect(record["StopIngest"]).To(ContainSubstring("Deployment someone-elses/ingest-worker exists and is not the tenant's"))
	g.Expect(record["DeleteWorker"]).To(ContainSubstring("Service, NetworkPolicy, RoleBinding, Role, ServiceAccount someone-elses/ingest-worker not found"),
		"the record lists what it did not find")
	g.Expect(record["DeleteWorker"]).To(ContainSubstring("Deployment someone-elses/ingest-worker exists and is not the tenant's"))
	g.Expect(record["DeleteWorker"]).NotTo(MatchRegexp(`Deployment[^;]* not found`))
	g.Expect(record["DeleteStorage"]).To(ContainSubstring("PersistentVolumeClaim someone-elses/data exists and is not the tenant's"))
	g.Expect(record["DeleteStorage"]).NotTo(ContainSubstring("data not found"))
	g.Expect(record["DeleteNamespace"]).To(ContainSubstring("Namespace someone-elses exists and carries no ownership mark"))
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(dep), dep)).To(Succeed())
	g.Expect(dep.DeletionTimestamp).To(BeNil())
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pvc), pvc)).To(Succeed())
	g.Expect(pvc.DeletionTimestamp).To(BeNil())
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ns), ns)).To(Succeed())
	g.Expect(ns.DeletionTimestamp).To(BeNil())
}

// Issue 11: changing erasure.gracePeriod after deactivation moves the
// schedule while erasure has not started, and status.gracePeriod shows the
// value in force.
func TestChangingTheGracePeriodAfterDeactivationMovesTheSchedule(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	tn := &platformv1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: "regrace"},
		Spec:       platformv1.TenantSpec{Erasure: platformv1.ErasurePolicy{GracePeriod: &metav1.Duration{Duration: 5 * day}}},
	}
	g.Expect(k8s.Create(ctx, tn)).To(Succeed())
	deactivatedAt := clock.Now().UTC().Truncate(time.Second)
	setState(g, tn.Name, platformv1.TenantDeactivated)
	g.Eventually(func(g Gomega) {
		g.Expect(tenant(g, tn.Name).Status.ErasureScheduledAt).NotTo(BeNil())
	}, timeout, interval).Should(Succeed())

	cur := tenant(g, tn.Name)
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Spec.Erasure.GracePeriod = &metav1.Duration{Duration: 2 * day}
	g.Expect(k8s.Patch(ctx, cur, patch)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.GracePeriod.Duration).To(Equal(2 * day))
		g.Expect(got.Status.ErasureScheduledAt.Time).To(BeTemporally("==", deactivatedAt.Add(2*day)))
		g.Expect(eventsAbout(g, tn.Name)).To(ContainElement(HavePrefix("Normal ErasureRescheduled")))
	}, timeout, interval).Should(Succeed())
}

// The Tenant's own erasure in an adopted namespace: the tenant's objects and
// data go, the namespace stays, and the record says so.
func TestErasingATenantInAnAdoptedNamespaceKeepsTheNamespace(t *testing.T) {
	g := NewWithT(t)
	ns := labelledNamespace(t, g, "team-kept", "keeper")
	startOperator(t)
	tn := provisionedIn(t, g, "keeper", ns.Name, 0)
	setState(g, tn.Name, platformv1.TenantDeactivated)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseErased))
		i := slices.IndexFunc(got.Status.Erasure, func(s platformv1.ErasureStep) bool { return s.Name == "DeleteNamespace" })
		g.Expect(i).To(BeNumerically(">=", 0))
		g.Expect(got.Status.Erasure[i].Verification).To(ContainSubstring("Namespace team-kept was adopted and is kept"))
	}, timeout, interval).Should(Succeed())
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ns), ns)).To(Succeed())
	g.Expect(ns.DeletionTimestamp).To(BeNil())
	g.Expect(ns.Annotations).NotTo(HaveKey(controllers.AnnotationTenantUID))
	g.Expect(gone(&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-keeper"}})()).To(BeTrue())
	g.Expect(gone(&platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "wa"}})()).To(BeTrue())
	g.Expect(gone(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: platformv1.SubjectKeySecretName}})()).To(BeTrue(),
		"the subject key the operator made for the tenant goes")
}
