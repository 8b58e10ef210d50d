package erasure_test

import (
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// listRequest is one list request a reader was asked for.
type listRequest struct {
	kind         string
	metadataOnly bool
	limit        int64
	continued    bool
}

// listRecorder passes every request to the API server and records the
// list requests.
type listRecorder struct {
	client.Reader
	mu    sync.Mutex
	lists []listRequest
}

func (r *listRecorder) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	gvk, err := apiutil.GVKForObject(list, scheme)
	if err != nil {
		return err
	}
	o := (&client.ListOptions{}).ApplyOptions(opts)
	_, partial := list.(*metav1.PartialObjectMetadataList)
	r.mu.Lock()
	r.lists = append(r.lists, listRequest{kind: gvk.Kind, metadataOnly: partial, limit: o.Limit, continued: o.Continue != ""})
	r.mu.Unlock()
	return r.Reader.List(ctx, list, opts...)
}

func (r *listRecorder) of(kind string) []listRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []listRequest
	for _, l := range r.lists {
		if l.kind == kind {
			out = append(out, l)
		}
	}
	return out
}

// At 10,000 tenants a sweep that lists every namespace, volume and Tenant
// in one response holds them all at once. It reads in pages instead, the
// namespaces as metadata only, and decides as before: with pages of 2, the
// orphaned namespace and volume that sort last (the last page) are found,
// and the live tenant that sorts last (the Tenants' last page) keeps its
// namespace. A private API server, so that the suite's other tenants do not
// change the pages.
func TestTheSweepReadsInPagesAndFindsAnOrphanOnTheLastPage(t *testing.T) {
	g := NewWithT(t)
	env, err := testenv.Start(scheme)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	c := env.Client

	marks := func(tenant, uid string) (map[string]string, map[string]string) {
		return map[string]string{platformv1.LabelTenant: tenant, platformv1.LabelManagedBy: platformv1.ManagedByValue},
			map[string]string{
				controllers.AnnotationTenantUID: uid, controllers.AnnotationNamespaceOrigin: controllers.OriginCreated,
				controllers.AnnotationStorageBackend: string(platformv1.StorageSQLite),
			}
	}
	// Three live Tenants, each with its marked namespace and released volume;
	// a namespace labelled without the mark (not the operator's); and the
	// namespace and volume of a Tenant that is gone, sorting last.
	for _, name := range []string{"paged-a", "paged-b", "paged-c"} {
		tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: name}}
		g.Expect(c.Create(ctx, tn)).To(Succeed())
		l, a := marks(name, string(tn.UID))
		g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tn.NamespaceName(), Labels: l, Annotations: a}})).To(Succeed())
		g.Expect(c.Create(ctx, pagedVolume("pv-"+name, tn.NamespaceName(), l, a))).To(Succeed())
	}
	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "tenant-paged-d", Labels: map[string]string{platformv1.LabelTenant: "paged-d"},
	}})).To(Succeed())
	l, a := marks("paged-gone", "uid-paged-gone")
	orphanNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tenant-paged-gone", Labels: l, Annotations: a}}
	g.Expect(c.Create(ctx, orphanNS)).To(Succeed())
	orphanPV := pagedVolume("pv-paged-gone", orphanNS.Name, l, a)
	g.Expect(c.Create(ctx, orphanPV)).To(Succeed())
	// A volume still bound is never an orphan, whoever it was made for.
	boundPV := pagedVolume("pv-paged-bound", orphanNS.Name, l, a)
	g.Expect(c.Create(ctx, boundPV)).To(Succeed())
	boundPV.Status.Phase = corev1.VolumeBound
	g.Expect(c.Status().Update(ctx, boundPV)).To(Succeed())

	reader := &listRecorder{Reader: c}
	clk := clocktesting.NewFakeClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	sweeper := &controllers.OrphanSweeper{
		APIReader:      reader,
		Eraser:         &controllers.TenantReconciler{Client: c, APIReader: c, Clock: clk},
		Recorder:       events.NewFakeRecorder(10),
		Clock:          clk,
		GracePeriod:    orphanGrace,
		MaxOrphanShare: 0.5,
		PageSize:       2,
	}
	busy, err := sweeper.Sweep(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(busy).To(BeFalse())

	found := clk.Now().Format(time.RFC3339)
	stamp := func(obj client.Object) string {
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		return obj.GetAnnotations()[controllers.AnnotationOrphanedAt]
	}
	g.Expect(stamp(orphanNS)).To(Equal(found), "the orphaned namespace on the last page is found")
	g.Expect(stamp(orphanPV)).To(Equal(found), "the orphaned volume on the last page is found")
	for _, name := range []string{"paged-a", "paged-b", "paged-c"} {
		g.Expect(stamp(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tenant-" + name}})).To(BeEmpty(), "%s is live", name)
		g.Expect(stamp(&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-" + name}})).To(BeEmpty(), "%s is live", name)
	}
	g.Expect(stamp(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tenant-paged-d"}})).To(BeEmpty(), "not the operator's")
	g.Expect(stamp(boundPV)).To(BeEmpty(), "a bound volume is not an orphan")
	g.Expect(metricValue(g, "omniflow_orphans", "kind", "namespace")).To(Equal(1.0))
	g.Expect(metricValue(g, "omniflow_orphans", "kind", "volume")).To(Equal(1.0))
	g.Expect(metricValue(g, "omniflow_orphans", "kind", "unowned-namespace")).To(Equal(1.0))

	// Five namespaces in three pages, metadata only; five volumes in three
	// pages; three Tenants in two.
	page := func(kind string, metadataOnly bool) listRequest {
		return listRequest{kind: kind, metadataOnly: metadataOnly, limit: 2}
	}
	next := func(r listRequest) listRequest { r.continued = true; return r }
	ns, pv, tn := page("NamespaceList", true), page("PersistentVolumeList", false), page("TenantList", false)
	g.Expect(reader.of("NamespaceList")).To(Equal([]listRequest{ns, next(ns), next(ns)}))
	g.Expect(reader.of("PersistentVolumeList")).To(Equal([]listRequest{pv, next(pv), next(pv)}))
	g.Expect(reader.of("TenantList")).To(Equal([]listRequest{tn, next(tn)}))
}

// pagedVolume is a tenant's volume, released from its claim (not bound).
func pagedVolume(name, namespace string, labels, annotations map[string]string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp/" + name}},
			ClaimRef:                      &corev1.ObjectReference{Namespace: namespace, Name: controllers.DataClaimName},
		},
	}
}
