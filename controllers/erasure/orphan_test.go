package erasure_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// forceRemove deletes a Tenant the way an impatient admin would: the
// finalizer is stripped, so no erasure runs and garbage collection takes
// the owned objects, leaving the namespace and a Retain volume behind.
func forceRemove(g Gomega, name string) {
	// Delete first, then strip the finalizer: stripped first, the operator
	// may put it back (it guards every live Tenant) before the delete lands.
	tn := tenant(g, name)
	g.Expect(k8s.Delete(ctx, tn)).To(Succeed())
	g.Eventually(func() error {
		tn := tenant(g, name)
		patch := client.MergeFromWithOptions(tn.DeepCopy(), client.MergeFromWithOptimisticLock{})
		tn.Finalizers = nil
		return k8s.Patch(ctx, tn, patch)
	}, timeout, interval).Should(Succeed())
	g.Eventually(gone(&platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: name}}), timeout, interval).Should(BeTrue())
}

func orphanedAt(g Gomega, obj client.Object) string {
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
	return obj.GetAnnotations()[controllers.AnnotationOrphanedAt]
}

func TestOrphanedDataIsErasedAfterTheGracePeriodCountedFromDiscovery(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	tn := provisioned(t, g, "orphan", 24*time.Hour)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tn.NamespaceName()}}
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-orphan"}}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pv), pv)).To(Succeed())
		g.Expect(pv.Labels).To(HaveKeyWithValue(platformv1.LabelTenant, "orphan"), "the bound volume is labelled for its tenant")
	}, timeout, interval).Should(Succeed())

	key := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: controllers.DataKeySecretName(tn.Name, tn.UID)}}
	g.Eventually(func() error { return k8s.Get(ctx, client.ObjectKeyFromObject(key), key) }, timeout, interval).Should(Succeed())
	found := clock.Now().UTC().Truncate(time.Second)
	forceRemove(g, tn.Name)

	g.Eventually(func(g Gomega) {
		g.Expect(orphanedAt(g, ns)).To(Equal(found.Format(time.RFC3339)))
		g.Expect(orphanedAt(g, pv)).To(Equal(found.Format(time.RFC3339)), "the released Retain volume is found too")
	}, timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) {
		var evs corev1.EventList // the core view of events.k8s.io Events
		g.Expect(k8s.List(ctx, &evs, client.InNamespace("default"))).To(Succeed())
		g.Expect(evs.Items).To(ContainElement(And(
			HaveField("InvolvedObject.Name", ns.Name), HaveField("Reason", "Orphaned"), HaveField("Type", corev1.EventTypeWarning))))
	}, timeout, interval).Should(Succeed())
	g.Expect(metricValue(g, "omniflow_orphans", "kind", "namespace")).To(Equal(1.0))
	erasedBefore := metricValue(g, "omniflow_orphans_erased_total", "kind", "namespace")

	// The stamp does not move, and nothing goes before the grace period ends.
	clock.SetTime(found.Add(orphanGrace - time.Second))
	g.Consistently(func(g Gomega) {
		g.Expect(orphanedAt(g, ns)).To(Equal(found.Format(time.RFC3339)))
		g.Expect(orphanedAt(g, pv)).To(Equal(found.Format(time.RFC3339)))
	}, 2*time.Second, interval).Should(Succeed())

	clock.SetTime(found.Add(orphanGrace + time.Second))
	g.Eventually(gone(ns), timeout, interval).Should(BeTrue())
	g.Eventually(gone(pv), timeout, interval).Should(BeTrue())
	g.Expect(gone(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: controllers.DataClaimName}})()).To(BeTrue())
	g.Expect(gone(key)()).To(BeTrue(), "the force-removed tenant's data key is destroyed too")

	// The record: each step in an Event on the namespace, then the verified end.
	g.Eventually(func(g Gomega) {
		notes := sweepEvents(g, ns.Name)
		g.Expect(notes).To(ContainElement(And(HavePrefix("Normal ErasureStep: DestroyKey of orphaned Tenant orphan"), ContainSubstring(key.Name))))
		g.Expect(notes).To(ContainElement(And(HavePrefix("Normal ErasureStep: DeleteStorage of orphaned Tenant orphan"), ContainSubstring(pv.Name))))
		g.Expect(notes).To(ContainElement(HavePrefix("Normal Erased: orphaned Namespace/" + ns.Name)))
		g.Expect(notes).NotTo(ContainElement(ContainSubstring("Warning ErasureStepFailed")))
		g.Expect(metricValue(g, "omniflow_orphans_erased_total", "kind", "namespace")).To(BeNumerically(">", erasedBefore))
	}, timeout, interval).Should(Succeed())
}

// labelledNamespace creates a namespace that carries only the tenant label,
// as a GitOps pipeline would ahead of its Tenant, and deletes it at the end.
func labelledNamespace(t *testing.T, g Gomega, name, tenant string) *corev1.Namespace {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{platformv1.LabelTenant: tenant}}}
	g.Expect(k8s.Create(ctx, ns)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	return ns
}

// sweepEvents lists "Type Reason: note" of the Events about a cluster-scoped
// object (they live in the default namespace).
func sweepEvents(g Gomega, name string) []string {
	var evs corev1.EventList // the core view of events.k8s.io Events
	g.Expect(k8s.List(ctx, &evs, client.InNamespace("default"))).To(Succeed())
	var out []string
	for _, e := range evs.Items {
		if e.InvolvedObject.Name == name {
			out = append(out, e.Type+" "+e.Reason+": "+e.Message)
		}
	}
	return out
}

// Issue 11: Tenant a, force-removed, then created again under another
// namespace. The old namespace is bound to the old Tenant's UID: it is an
// orphan, not "adopted", and the sweep erases it and its volume.
func TestATenantRecreatedUnderAnotherNamespaceLeavesNoOldData(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	tn := provisioned(t, g, "moved", 24*time.Hour)
	oldNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tn.NamespaceName()}}
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-moved"}}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pv), pv)).To(Succeed())
		g.Expect(pv.Annotations).To(HaveKeyWithValue(controllers.AnnotationTenantUID, string(tn.UID)))
	}, timeout, interval).Should(Succeed())
	oldKey := keyOf(g, tn)
	forceRemove(g, tn.Name)

	again := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "moved"}, Spec: platformv1.TenantSpec{Namespace: "moved-elsewhere"}}
	g.Expect(k8s.Create(ctx, again)).To(Succeed())
	// It takes over no data, so it takes over no key: a fresh one, and the old key is
	// an orphan like the old namespace.
	newKey := keyOf(g, tenant(g, again.Name))
	g.Expect(newKey.Data[datakey.IndexKey]).NotTo(Equal(oldKey.Data[datakey.IndexKey]))
	g.Expect(newKey.Data["key-1"]).NotTo(Equal(oldKey.Data["key-1"]))
	var found string
	g.Eventually(func(g Gomega) {
		found = orphanedAt(g, oldNS)
		g.Expect(found).NotTo(BeEmpty(), "the old namespace is an orphan although a Tenant of its name exists")
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: "moved-elsewhere"}, &corev1.Namespace{})).To(Succeed())
	}, timeout, interval).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(sweepEvents(g, oldNS.Name)).NotTo(ContainElement(HavePrefix("Normal Adopted")))
	}, time.Second, interval).Should(Succeed())

	at, err := time.Parse(time.RFC3339, found)
	g.Expect(err).NotTo(HaveOccurred())
	clock.SetTime(at.Add(orphanGrace + time.Second))
	g.Eventually(gone(oldNS), timeout, interval).Should(BeTrue())
	g.Eventually(gone(pv), timeout, interval).Should(BeTrue())
	g.Eventually(gone(oldKey), timeout, interval).Should(BeTrue())
	// The new Tenant's namespace is its own and stays.
	g.Consistently(func() error {
		return k8s.Get(ctx, types.NamespacedName{Name: "moved-elsewhere"}, &corev1.Namespace{})
	}, time.Second, interval).Should(Succeed())
}

// Issue 12: a namespace that carries the tenant label but not the operator's
// mark (GitOps made it ahead of its Tenant) is not the operator's: the sweep
// never stamps or deletes it, however long its Tenant stays away.
func TestANamespaceWithOnlyTheTenantLabelIsNeverDeleted(t *testing.T) {
	g := NewWithT(t)
	ns := labelledNamespace(t, g, "gitops-ahead", "not-yet")
	startOperator(t)
	g.Eventually(func(g Gomega) {
		g.Expect(metricValue(g, "omniflow_orphans", "kind", "unowned-namespace")).To(BeNumerically(">=", 1))
	}, timeout, interval).Should(Succeed())
	clock.SetTime(clock.Now().Add(10 * orphanGrace))
	g.Consistently(func(g Gomega) {
		g.Expect(orphanedAt(g, ns)).To(BeEmpty())
		g.Expect(ns.DeletionTimestamp).To(BeNil())
	}, 3*time.Second, interval).Should(Succeed())
}

// An adopted namespace whose Tenant went: the tenant's objects and data go
// (worker, claim, volume, channels), the namespace and what others put in it
// stay, and the operator's marks are removed.
func TestAnAdoptedNamespaceStaysWhenItsTenantGoes(t *testing.T) {
	g := NewWithT(t)
	ns := labelledNamespace(t, g, "team-adopted", "adopter")
	theirs := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "team-settings", Namespace: ns.Name}}
	g.Expect(k8s.Create(ctx, theirs)).To(Succeed())
	startOperator(t)
	tn := provisionedIn(t, g, "adopter", ns.Name, 24*time.Hour)
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ns), ns)).To(Succeed())
		g.Expect(ns.Annotations).To(HaveKeyWithValue(controllers.AnnotationTenantUID, string(tn.UID)))
		g.Expect(ns.Annotations).To(HaveKeyWithValue(controllers.AnnotationNamespaceOrigin, controllers.OriginAdopted))
		g.Expect(ns.Annotations).To(HaveKeyWithValue(controllers.AnnotationVolume, "pv-adopter"))
	}, timeout, interval).Should(Succeed())
	forceRemove(g, tn.Name)
	var found string
	g.Eventually(func(g Gomega) { found = orphanedAt(g, ns); g.Expect(found).NotTo(BeEmpty()) }, timeout, interval).Should(Succeed())
	at, err := time.Parse(time.RFC3339, found)
	g.Expect(err).NotTo(HaveOccurred())
	clock.SetTime(at.Add(orphanGrace + time.Second))

	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ns), ns)).To(Succeed())
		g.Expect(ns.DeletionTimestamp).To(BeNil(), "an adopted namespace is never deleted")
		for k := range ns.Annotations {
			if k != controllers.AnnotationReleasedFrom {
				g.Expect(k).NotTo(HavePrefix(controllers.MarkPrefix), "the operator's marks are removed")
			}
		}
		g.Expect(ns.Annotations).To(HaveKeyWithValue(controllers.AnnotationReleasedFrom, string(tn.UID)))
		var channels platformv1.MetaChannelList
		g.Expect(k8s.List(ctx, &channels, client.InNamespace(ns.Name))).To(Succeed())
		g.Expect(channels.Items).To(BeEmpty())
	}, timeout, interval).Should(Succeed())
	g.Expect(gone(&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-adopter"}})()).To(BeTrue())
	g.Expect(gone(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: controllers.DataClaimName}})()).To(BeTrue())
	g.Expect(gone(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: controllers.WorkerName}})()).To(BeTrue())
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(theirs), theirs)).To(Succeed(), "what others put in the namespace stays")
	g.Expect(sweepEvents(g, ns.Name)).To(ContainElement(And(HavePrefix("Normal ErasureStep: DeleteNamespace"), ContainSubstring("was adopted and is kept"))))
}

func TestARecreatedTenantAdoptsItsOrphanedData(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	tn := provisioned(t, g, "comeback", 24*time.Hour)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tn.NamespaceName()}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "meta-app", Namespace: ns.Name}}
	oldKey := keyOf(g, tn)
	forceRemove(g, tn.Name)
	g.Eventually(func(g Gomega) { g.Expect(orphanedAt(g, ns)).NotTo(BeEmpty()) }, timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) { g.Expect(orphanedAt(g, oldKey)).NotTo(BeEmpty()) }, timeout, interval).Should(Succeed(),
		"the predecessor's key is an orphan until a Tenant takes it over")

	again := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "comeback"}}
	g.Expect(k8s.Create(ctx, again)).To(Succeed())
	g.Eventually(func(g Gomega) { g.Expect(orphanedAt(g, ns)).To(BeEmpty()) }, timeout, interval).Should(Succeed())

	// Issue 17: the data it takes over is sealed under the predecessor's key, so the
	// key comes with it: the same ring under the new Tenant's name and mark, and the
	// predecessor's Secret gone (never left for the sweep to destroy with the data's
	// only key).
	again = tenant(g, again.Name)
	newKey := keyOf(g, again)
	g.Expect(newKey.Data).To(Equal(oldKey.Data), "the predecessor's ring, not a fresh key")
	g.Expect(newKey.Annotations).To(HaveKeyWithValue(controllers.AnnotationTenantUID, string(again.UID)))
	g.Expect(newKey.Annotations).NotTo(HaveKey(controllers.AnnotationOrphanedAt))
	g.Eventually(gone(oldKey), timeout, interval).Should(BeTrue())
	g.Eventually(func(g Gomega) {
		g.Expect(eventsAbout(g, again.Name)).To(ContainElement(HavePrefix("Normal DataKeyTakenOver: the data key of an earlier Tenant comeback is taken over")))
		enc := tenant(g, again.Name).Status.Encryption
		g.Expect(enc).NotTo(BeNil())
		g.Expect(enc.KeySecret).To(Equal(operatorNamespace + "/" + newKey.Name))
		g.Expect(enc.KeyVersion).To(Equal(int32(1)))
	}, timeout, interval).Should(Succeed())

	clock.SetTime(clock.Now().Add(10 * orphanGrace))
	g.Consistently(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ns), ns)).To(Succeed())
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed(), "the tenant's data is kept")
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(newKey), &corev1.Secret{})).To(Succeed(), "and the key it is sealed under")
	}, 2*time.Second, interval).Should(Succeed())
}

func TestSweepStandsDownWhenMostTenantsLookOrphaned(t *testing.T) {
	g := NewWithT(t)
	live := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "alive"}}
	g.Expect(k8s.Create(ctx, live)).To(Succeed())
	// A restore brought back namespaces, but not their Tenants: more of
	// them than there are live tenant namespaces, whatever earlier tests left.
	var existing corev1.NamespaceList
	g.Expect(k8s.List(ctx, &existing, client.HasLabels{platformv1.LabelTenant})).To(Succeed())
	var ghosts []string
	for i := 0; i <= len(existing.Items)+1; i++ {
		ghosts = append(ghosts, fmt.Sprintf("ghost-%d", i))
	}
	for _, name := range ghosts {
		// Namespaces the operator made (they carry its marks, which only it
		// may write), for Tenants that are gone.
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   "tenant-" + name,
			Labels: map[string]string{platformv1.LabelTenant: name, platformv1.LabelManagedBy: platformv1.ManagedByValue},
			Annotations: map[string]string{
				controllers.AnnotationTenantUID: "uid-" + name, controllers.AnnotationNamespaceOrigin: controllers.OriginCreated,
				controllers.AnnotationStorageBackend: string(platformv1.StorageSQLite),
			},
		}}
		g.Expect(asOperator.Create(ctx, ns)).To(Succeed())
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	}
	startOperator(t)
	g.Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Name: "tenant-alive"}, &corev1.Namespace{})
	}, timeout, interval).Should(Succeed())

	g.Eventually(func(g Gomega) {
		g.Expect(metricValue(g, "omniflow_orphan_sweep_stood_down", "", "")).To(Equal(1.0))
	}, timeout, interval).Should(Succeed())
	clock.SetTime(clock.Now().Add(10 * orphanGrace))
	g.Consistently(func(g Gomega) {
		for _, name := range ghosts {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tenant-" + name}}
			g.Expect(orphanedAt(g, ns)).To(BeEmpty(), "%s was stamped although the sweep should stand down", name)
			g.Expect(ns.DeletionTimestamp).To(BeNil())
		}
	}, 3*time.Second, interval).Should(Succeed())
}

// Without the Tenant CRD every tenant would look orphaned: the sweep must
// not act at all. A second API server without our CRDs shows it.
func TestSweepStandsDownWithoutTheTenantCRD(t *testing.T) {
	g := NewWithT(t)
	env := &envtest.Environment{Scheme: scheme}
	cfg, err := env.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "tenant-lonely", Labels: map[string]string{platformv1.LabelTenant: "lonely"},
	}}
	g.Expect(c.Create(ctx, ns)).To(Succeed())

	sweeper := &controllers.OrphanSweeper{
		APIReader:      c,
		Eraser:         &controllers.TenantReconciler{Client: c, APIReader: c, Clock: clock},
		Clock:          clock,
		GracePeriod:    0,
		MaxOrphanShare: 0.5,
	}
	busy, err := sweeper.Sweep(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(busy).To(BeFalse())
	g.Expect(metricValue(g, "omniflow_orphan_sweep_stood_down", "", "")).To(Equal(1.0))
	g.Expect(c.Get(ctx, client.ObjectKeyFromObject(ns), ns)).To(Succeed())
	g.Expect(ns.Annotations).NotTo(HaveKey(controllers.AnnotationOrphanedAt))
	g.Expect(ns.DeletionTimestamp).To(BeNil())
}

// metricValue reads a gauge from the operator's registry; -1 when absent.
func metricValue(g Gomega, name, label, value string) float64 {
	v, found, err := testenv.MetricValue(name, label, value)
	g.Expect(err).NotTo(HaveOccurred())
	if !found {
		return -1
	}
	return v
}
