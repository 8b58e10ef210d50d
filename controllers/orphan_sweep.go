package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// AnnotationOrphanedAt is stamped on a tenant namespace or volume whose
// Tenant no longer exists, with the time the sweep found it: the grace
// period, and so the 14-day promise, runs from then.
const AnnotationOrphanedAt = "platform.omniflowcrm.com/orphaned-at"

// AnnotationErasedSteps records, on an orphaned namespace, the erasure steps
// the sweep has completed (comma-separated), so that a step is run, and
// reported, once.
const AnnotationErasedSteps = MarkPrefix + "erased-steps"

var (
	orphansFound = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "omniflow_orphans",
		Help: "Tenant namespaces, volumes and PostgreSQL databases whose Tenant no longer exists, found by the last sweep.",
	}, []string{"kind"})
	sweepStoodDown = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "omniflow_orphan_sweep_stood_down",
		Help: "1 when the last orphan sweep refused to act (Tenant CRD missing, or too many tenants looked orphaned at once).",
	})
	orphansErased = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omniflow_orphans_erased_total",
		Help: "Orphaned tenant namespaces, volumes and PostgreSQL databases the sweep erased and verified.",
	}, []string{"kind"})
	orphanStepFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omniflow_orphan_erasure_failures_total",
		Help: "Orphan erasure steps that failed and will be retried (for example a PostgreSQL server that cannot be reached).",
	}, []string{"step"})
)

func init() {
	metrics.Registry.MustRegister(orphansFound, sweepStoodDown, orphansErased, orphanStepFailures)
}

// OrphanSweeper finds the data of tenants that vanished without their
// erasure (someone force-removed the finalizer, deleted the Tenant while the
// operator was not installed, or re-created it under another namespace) and
// erases it after the grace period, counted from when it was found. Only
// what carries the operator's ownership mark is ever touched: an orphan's
// namespace is bound to its Tenant's UID (AnnotationTenantUID), and the
// erasure runs the Tenant's own steps on a target read from the namespace's
// marks. With the PostgreSQL backend enabled it also scans the shared
// server for databases bound to a Tenant that left no mark in the cluster
// (orphan_databases.go). It never turns into a mass deletion: when the Tenant CRD is missing, or when more than a share of
// tenant namespaces look orphaned at once (a CRD reinstall, a restore of
// etcd), it stands down and alerts instead.
type OrphanSweeper struct {
	APIReader client.Reader
	Eraser    *TenantReconciler
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Interval between sweeps; a sweep with an erasure in progress comes
	// back sooner.
	Interval time.Duration
	// GracePeriod between finding an orphan and erasing it.
	GracePeriod time.Duration
	// MaxOrphanShare is the share of tenant namespaces above which the sweep
	// stands down (0.5: more than half).
	MaxOrphanShare float64
	// PageSize is how many objects one list request of the sweep returns
	// (0: sweepPageSize). The sweep decodes a page at a time and keeps of
	// each object only what it decides on, so what it holds does not grow
	// with a full listing of every tenant's objects.
	PageSize int64

	// deleting holds the orphans whose last step (the namespace or volume
	// going) was requested, so that their verified end is recorded once
	// they no longer show up in a listing.
	deleting map[string]*erasureTarget
}

// NeedLeaderElection: only the leader sweeps.
func (s *OrphanSweeper) NeedLeaderElection() bool { return true }

// Start sweeps at once and then every Interval until ctx ends.
func (s *OrphanSweeper) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("orphan-sweep")
	ctx = logf.IntoContext(ctx, log)
	for {
		busy, err := s.Sweep(ctx)
		if err != nil && ctx.Err() != nil {
			return nil //nolint:nilerr // shutting down: the pass was cut short, nothing failed
		}
		logSweepFailure(log, err)
		wait := s.Interval
		if busy || err != nil {
			wait = min(wait, erasurePoll)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// logSweepFailure logs what made a pass fail; the pass is run again soon
// (Start). Two failures are part of normal operation and logged at V(1)
// only: a write conflict (someone wrote the object meanwhile) and an expired
// continue token (the API server compacted the snapshot a paged listing was
// reading, which a long listing at scale meets; nothing was decided on the
// partial listing, and the next pass lists anew). A pass that failed in any
// other way too is an error, whatever it is joined with: a conflict on one
// orphan must not hide a PostgreSQL server that refused the erasure of
// another.
func logSweepFailure(log logr.Logger, err error) {
	switch {
	case err == nil:
	case onlyErrorsOf(err, func(err error) bool { return apierrors.IsConflict(err) || apierrors.IsResourceExpired(err) }):
		log.V(1).Info("Orphan sweep met a write conflict or an expired listing; sweeping again", "error", err.Error())
	default:
		log.Error(err, "Orphan sweep failed")
	}
}

// sweepPageSize is how many objects a list request of the sweep asks for
// when PageSize is not set: 500 namespaces are about 1 MiB decoded.
const sweepPageSize = 500

func (s *OrphanSweeper) pageSize() int64 {
	if s.PageSize > 0 {
		return s.PageSize
	}
	return sweepPageSize
}

// Sweep runs one pass. busy reports an erasure still in progress.
func (s *OrphanSweeper) Sweep(ctx context.Context) (busy bool, err error) {
	log := logf.FromContext(ctx)
	sel, err := tenantLabelSelector()
	if err != nil {
		return false, err
	}
	l := listing{listed: map[string]bool{}}
	if err := s.listNamespaces(ctx, sel, &l); err != nil {
		return false, err
	}
	if err := s.listVolumes(ctx, sel, &l); err != nil {
		return false, err
	}
	if err := s.listDataKeys(ctx, &l); err != nil {
		return false, err
	}
	// The server's databases too, when the PostgreSQL backend is enabled.
	scan := s.scanDatabases(ctx)
	// Tenants are listed after what they own: a namespace or database made
	// for a Tenant created meanwhile is listed with its Tenant, never as an
	// orphan.
	tenants, err := s.listTenants(ctx)
	if err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			sweepStoodDown.Set(1)
			log.Error(err, "Tenant CRD is missing: the orphan sweep stands down rather than treat every tenant as gone")
			return false, nil
		}
		return false, fmt.Errorf("list tenants: %w", err)
	}

	f, err := s.classify(ctx, l.namespaces, l.volumes, tenants)
	if err != nil {
		return false, err
	}
	orphanNS, orphanPV, owned := f.namespaces, f.volumes, f.owned
	orphanKeys := orphanedKeys(l.keys, tenants)
	orphansFound.WithLabelValues("namespace").Set(float64(len(orphanNS)))
	orphansFound.WithLabelValues("volume").Set(float64(len(orphanPV)))
	orphansFound.WithLabelValues("data-key").Set(float64(len(orphanKeys)))
	orphansFound.WithLabelValues("unowned-namespace").Set(float64(f.unowned))

	if tooMany(len(orphanNS), owned, s.MaxOrphanShare) || tooMany(len(orphanKeys), len(l.keys), s.MaxOrphanShare) {
		sweepStoodDown.Set(1)
		log.Error(nil, "Too many tenant namespaces or data keys look orphaned at once: the orphan sweep stands down; check the Tenant objects (a CRD reinstall or a restore?)",
			"orphaned", len(orphanNS), "tenantNamespaces", owned, "orphanedKeys", len(orphanKeys), "dataKeys", len(l.keys), "maxShare", s.MaxOrphanShare)
		return false, nil
	}
	sweepStoodDown.Set(0)

	var errs []error
	note := func(b bool, err error) {
		busy = busy || b
		if err != nil {
			errs = append(errs, err)
		}
	}
	for key, tgt := range s.deleting {
		if !l.listed[key] {
			note(s.erase(ctx, key, tgt, nil))
		}
	}
	for _, ns := range orphanNS {
		note(s.sweepNamespace(ctx, ns))
	}
	for _, pv := range orphanPV {
		note(s.sweepVolume(ctx, pv))
	}
	for _, key := range orphanKeys {
		note(s.sweepKey(ctx, key))
	}
	if scan != nil {
		note(s.sweepDatabases(ctx, scan, tenants, l.namespaces))
	}
	return busy, errors.Join(errs...)
}

// listing is what one sweep listed, of each object only what it decides on.
type listing struct {
	// namespaces are the tenant-labelled namespaces (metadata only).
	namespaces []*metav1.PartialObjectMetadata
	// volumes are the tenant-labelled volumes that are not bound: a bound
	// volume is never an orphan (classify).
	volumes []*corev1.PersistentVolume
	// keys are the data key Secrets in the operator's namespace (metadata).
	keys []*metav1.PartialObjectMetadata
	// listed holds "Kind/name" of the objects listed that an erasure in
	// progress waits to see gone (deleting); nothing else asks.
	listed map[string]bool
}

// saw records that an object was listed, if an erasure waits for it.
func (s *OrphanSweeper) saw(l *listing, kind, name string) {
	if len(s.deleting) == 0 {
		return
	}
	if key := kind + "/" + name; s.deleting[key] != nil {
		l.listed[key] = true
	}
}

// listInPages lists in pages of size objects and hands each page to each
// before it asks for the next. The API server serves every page after the
// first from the first one's snapshot (the continue token), so the pages
// together are the listing one unpaged request would return; only one page
// is decoded at a time.
func listInPages[L client.ObjectList](ctx context.Context, r client.Reader, size int64, newPage func() L, each func(L), opts ...client.ListOption) error {
	var next string
	for {
		page := newPage()
		if err := r.List(ctx, page, append(opts[:len(opts):len(opts)], client.Limit(size), client.Continue(next))...); err != nil {
			return err
		}
		each(page)
		if next = page.GetContinue(); next == "" {
			return nil
		}
	}
}

// metadataList is an empty metadata-only list of a core kind.
func metadataList(kind string) *metav1.PartialObjectMetadataList {
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind + "List"))
	return &list
}

// keptMeta is what the sweep keeps of a listed object's metadata: its name,
// the identity its Events name, and its labels and annotations (the marks it
// decides on). The rest, managedFields above all, goes with the page.
func keptMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Labels: m.Labels, Annotations: m.Annotations,
	}
}

// keptPartial is keptMeta of a metadata-only list's item, with its kind
// (which an Event about it needs).
func keptPartial(item *metav1.PartialObjectMetadata, kind string) *metav1.PartialObjectMetadata {
	out := &metav1.PartialObjectMetadata{ObjectMeta: keptMeta(&item.ObjectMeta)}
	out.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind))
	return out
}

// listMetadata lists objects of a core kind in pages, metadata only, and
// appends to into what the sweep keeps of each.
func (s *OrphanSweeper) listMetadata(ctx context.Context, l *listing, kind string, into *[]*metav1.PartialObjectMetadata, opts ...client.ListOption) error {
	return listInPages(ctx, s.APIReader, s.pageSize(), func() *metav1.PartialObjectMetadataList { return metadataList(kind) },
		func(page *metav1.PartialObjectMetadataList) {
			for i := range page.Items {
				o := keptPartial(&page.Items[i], kind)
				s.saw(l, kind, o.Name)
				*into = append(*into, o)
			}
		}, opts...)
}

// listNamespaces lists the tenant-labelled namespaces, metadata only: the
// sweep reads their labels and marks, never their spec or status.
func (s *OrphanSweeper) listNamespaces(ctx context.Context, sel labels.Selector, l *listing) error {
	err := s.listMetadata(ctx, l, "Namespace", &l.namespaces, client.MatchingLabelsSelector{Selector: sel})
	if err != nil {
		return fmt.Errorf("list tenant namespaces: %w", err)
	}
	return nil
}

// listVolumes lists the tenant-labelled volumes in full (the claim they
// were bound to and their phase are in spec and status) and keeps, of those
// not bound, the metadata, the claim reference and the phase.
func (s *OrphanSweeper) listVolumes(ctx context.Context, sel labels.Selector, l *listing) error {
	err := listInPages(ctx, s.APIReader, s.pageSize(), func() *corev1.PersistentVolumeList { return &corev1.PersistentVolumeList{} },
		func(page *corev1.PersistentVolumeList) {
			for i := range page.Items {
				pv := &page.Items[i]
				s.saw(l, "PersistentVolume", pv.Name)
				if pv.Status.Phase == corev1.VolumeBound {
					continue
				}
				l.volumes = append(l.volumes, &corev1.PersistentVolume{
					ObjectMeta: keptMeta(&pv.ObjectMeta),
					Spec:       corev1.PersistentVolumeSpec{ClaimRef: pv.Spec.ClaimRef},
					Status:     corev1.PersistentVolumeStatus{Phase: pv.Status.Phase},
				})
			}
		}, client.MatchingLabelsSelector{Selector: sel})
	if err != nil {
		return fmt.Errorf("list tenant volumes: %w", err)
	}
	return nil
}

// listTenants lists every Tenant and keeps what the sweep decides on.
func (s *OrphanSweeper) listTenants(ctx context.Context) (liveTenants, error) {
	live := liveTenants{byUID: map[types.UID]string{}, byName: map[string]namedTenant{}}
	err := listInPages(ctx, s.APIReader, s.pageSize(), func() *platformv1.TenantList { return &platformv1.TenantList{} },
		func(page *platformv1.TenantList) {
			for i := range page.Items {
				live.add(&page.Items[i])
			}
		})
	return live, err
}

// liveTenants is what the sweep knows of the Tenants that exist: the
// namespace each uses, by UID and by name (Tenants are cluster-scoped, so
// a name is unique).
type liveTenants struct {
	byUID  map[types.UID]string
	byName map[string]namedTenant
}

// namedTenant is the Tenant of a name: its namespace, and whether its
// erasure has run (status.erasedAt).
type namedTenant struct {
	namespace string
	erased    bool
}

func (l liveTenants) add(t *platformv1.Tenant) {
	l.byUID[t.UID] = t.NamespaceName()
	l.byName[t.Name] = namedTenant{namespace: t.NamespaceName(), erased: t.Status.ErasedAt != nil}
}

// findings are what one sweep found.
type findings struct {
	namespaces []*metav1.PartialObjectMetadata
	volumes    []*corev1.PersistentVolume
	// owned counts the namespaces bound to a Tenant by the mark (live or
	// not); unowned those labelled for a Tenant that does not exist, without
	// the mark.
	owned, unowned int
}

// classify sorts what the sweep listed into orphans and the rest, and
// clears the stamp of a namespace whose Tenant came back.
func (s *OrphanSweeper) classify(ctx context.Context, nss []*metav1.PartialObjectMetadata, pvs []*corev1.PersistentVolume, tenants liveTenants) (findings, error) {
	var f findings
	for _, ns := range nss {
		switch ownerOf(ns, ns.Name, tenants) {
		case ownerLive:
			f.owned++
			if err := s.clearStamp(ctx, ns); err != nil {
				return f, err
			}
		case ownerGone:
			f.owned++
			f.namespaces = append(f.namespaces, ns)
		case ownerNone:
			// Labelled, but not bound to a Tenant by the operator's mark:
			// someone else's (GitOps ahead of its Tenant). Never touched.
			if _, ok := tenants.byName[ns.Labels[platformv1.LabelTenant]]; !ok {
				f.unowned++
			}
		}
	}
	for _, pv := range pvs {
		claimNS := ""
		if pv.Spec.ClaimRef != nil {
			claimNS = pv.Spec.ClaimRef.Namespace
		}
		if pv.Status.Phase != corev1.VolumeBound && ownerOf(pv, claimNS, tenants) == ownerGone {
			f.volumes = append(f.volumes, pv)
		}
	}
	return f, nil
}

// owner is whose a labelled namespace or volume is.
type owner int

const (
	// ownerNone: no ownership mark; not the operator's, never touched.
	ownerNone owner = iota
	// ownerLive: its Tenant exists and uses it.
	ownerLive
	// ownerGone: marked for a Tenant that is gone, or that now lives in
	// another namespace: an orphan.
	ownerGone
)

// ownerOf decides whose an object is from its marks and the live Tenants:
// the sweep's side of tenantOwns, which asks the same of one Tenant. The
// UID decides; the tenant label of a bound namespace only the operator may
// change (config/policy/namespace_marks.yaml).
// namespace is the tenant namespace the object belongs to (the namespace
// itself, or a volume's claim's). A Tenant re-created under the same name
// and the same namespace takes it over (the reconciler re-binds the mark);
// under another namespace, the old one is an orphan.
func ownerOf(obj client.Object, namespace string, tenants liveTenants) owner {
	uid := obj.GetAnnotations()[AnnotationTenantUID]
	if uid == "" || obj.GetLabels()[platformv1.LabelTenant] == "" {
		return ownerNone
	}
	if ns, ok := tenants.byUID[types.UID(uid)]; ok && ns == namespace {
		return ownerLive
	}
	if t, ok := tenants.byName[obj.GetLabels()[platformv1.LabelTenant]]; ok && t.namespace == namespace && !t.erased {
		return ownerLive
	}
	return ownerGone
}

// tooMany: more than maxShare of the tenant namespaces look orphaned. A
// single orphan among few namespaces is normal; half of them is not.
func tooMany(orphans, total int, maxShare float64) bool {
	if orphans <= 1 || total == 0 {
		return false
	}
	return float64(orphans)/float64(total) > maxShare
}

func tenantLabelSelector() (labels.Selector, error) {
	req, err := labels.NewRequirement(platformv1.LabelTenant, selection.Exists, nil)
	if err != nil {
		return nil, fmt.Errorf("tenant label selector: %w", err)
	}
	return labels.NewSelector().Add(*req), nil
}

// clearStamp clears the orphan stamp (and any record of a started orphan
// erasure) of a namespace whose Tenant came back.
func (s *OrphanSweeper) clearStamp(ctx context.Context, ns *metav1.PartialObjectMetadata) error {
	if _, ok := ns.Annotations[AnnotationOrphanedAt]; !ok {
		return nil
	}
	for _, k := range []string{AnnotationErasedSteps, AnnotationOrphanedAt} {
		if err := s.Eraser.annotate(ctx, ns, k, ""); err != nil {
			return fmt.Errorf("clear orphan stamp of %s: %w", ns.Name, err)
		}
	}
	s.Recorder.Eventf(ns, nil, corev1.EventTypeNormal, "Adopted", "Sweep",
		"Tenant %s exists again and adopts namespace %s; its data is kept", ns.Labels[platformv1.LabelTenant], ns.Name)
	return nil
}

// stamp records when an orphan was found, once, and reports that time.
func (s *OrphanSweeper) stamp(ctx context.Context, obj client.Object, kind string) (time.Time, error) {
	if v, ok := obj.GetAnnotations()[AnnotationOrphanedAt]; ok {
		if at, err := time.Parse(time.RFC3339, v); err == nil {
			return at, nil
		}
		// A stamp someone mangled counts from now: never erase early.
	}
	now := s.Clock.Now().UTC().Truncate(time.Second)
	if err := s.Eraser.annotate(ctx, obj, AnnotationOrphanedAt, now.Format(time.RFC3339)); err != nil {
		return now, fmt.Errorf("stamp orphan: %w", err)
	}
	logf.FromContext(ctx).Info("Found orphaned tenant data", "kind", kind, "name", obj.GetName(),
		"tenant", obj.GetLabels()[platformv1.LabelTenant], "tenantUID", obj.GetAnnotations()[AnnotationTenantUID])
	s.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, "Orphaned", "Sweep",
		"%s %s belongs to Tenant %s (uid %s), which does not exist or no longer uses it; it will be erased at %s unless that Tenant is created again",
		kind, obj.GetName(), obj.GetLabels()[platformv1.LabelTenant], obj.GetAnnotations()[AnnotationTenantUID], now.Add(s.GracePeriod).Format(time.RFC3339))
	return now, nil
}

// due stamps an orphan and reports whether its grace period has passed.
func (s *OrphanSweeper) due(ctx context.Context, obj client.Object, kind string) (bool, error) {
	foundAt, err := s.stamp(ctx, obj, kind)
	if err != nil {
		return false, err
	}
	return !s.Clock.Now().Before(foundAt.Add(s.GracePeriod)), nil
}

// sweepNamespace erases an orphaned namespace with the Tenant's own steps,
// on a target read from its marks, once the grace period since it was
// found has passed.
func (s *OrphanSweeper) sweepNamespace(ctx context.Context, ns *metav1.PartialObjectMetadata) (bool, error) {
	if due, err := s.due(ctx, ns, "Namespace"); err != nil || !due {
		return false, err
	}
	tgt, err := targetFromNamespace(ns)
	if err != nil {
		s.failed(ctx, ns, "Plan", err)
		return false, err
	}
	return s.erase(ctx, "Namespace/"+ns.Name, tgt, ns)
}

// sweepVolume erases a released volume whose Tenant is gone: the store's
// step of the erasure, on a target that names only the volume.
func (s *OrphanSweeper) sweepVolume(ctx context.Context, pv *corev1.PersistentVolume) (bool, error) {
	if due, err := s.due(ctx, pv, "PersistentVolume"); err != nil || !due {
		return false, err
	}
	tgt := &erasureTarget{
		tenantRef: tenantRef{Name: pv.Labels[platformv1.LabelTenant], UID: types.UID(pv.Annotations[AnnotationTenantUID])},
		Backend:   platformv1.StorageSQLite,
		Volume:    pv.Name,
		Regarding: pv,
	}
	if pv.Spec.ClaimRef != nil {
		tgt.Namespace = pv.Spec.ClaimRef.Namespace
	}
	return s.erase(ctx, "PersistentVolume/"+pv.Name, tgt, nil)
}

// erase runs the steps of the erasure not yet recorded on the orphaned
// namespace (ns; nil for a volume, which has only the store's step, or once
// the namespace is gone). Each verified step is logged and recorded in an
// Event on the orphan; a failing step is reported (Event, metric, log) and
// retried on the next pass, never skipped.
func (s *OrphanSweeper) erase(ctx context.Context, key string, tgt *erasureTarget, ns *metav1.PartialObjectMetadata) (bool, error) {
	log := logf.FromContext(ctx).WithValues("orphan", key, "tenant", tgt.Name, "tenantUID", tgt.UID)
	kind, _, _ := strings.Cut(key, "/")
	steps := orphanSteps[kind]
	done := map[erasureStep]bool{}
	if ns != nil {
		for _, d := range strings.Split(ns.Annotations[AnnotationErasedSteps], ",") {
			done[erasureStep(d)] = true
		}
	} else if prev := s.deleting[key]; prev != nil {
		for _, st := range steps[:len(steps)-1] {
			done[st] = true // recorded before the namespace went
		}
	}
	for _, step := range steps {
		if done[step] {
			continue
		}
		verification, ok, err := s.Eraser.runStep(ctx, tgt, step)
		if err != nil {
			s.failed(ctx, tgt.Regarding, string(step), err)
			return true, fmt.Errorf("%s: erasure step %s: %w", key, step, err)
		}
		if !ok {
			if step == steps[len(steps)-1] {
				s.remember(key, tgt)
			}
			log.V(1).Info("Orphan erasure step in progress", "step", step, "verification", verification)
			return true, nil
		}
		log.Info("Orphan erasure step done", "step", step, "verification", verification)
		s.Recorder.Eventf(tgt.Regarding, nil, corev1.EventTypeNormal, "ErasureStep", "Sweep",
			"%s of orphaned Tenant %s (uid %s) verified: %s", step, tgt.Name, tgt.UID, verification)
		done[step] = true
		if ns != nil && step != steps[len(steps)-1] {
			var names []string
			for _, st := range steps {
				if done[st] {
					names = append(names, string(st))
				}
			}
			if err := s.Eraser.annotate(ctx, ns, AnnotationErasedSteps, strings.Join(names, ",")); err != nil {
				return true, err
			}
		}
	}
	delete(s.deleting, key)
	orphansErased.WithLabelValues(strings.ToLower(kind)).Inc()
	s.Recorder.Eventf(tgt.Regarding, nil, corev1.EventTypeNormal, "Erased", "Sweep",
		"orphaned %s of Tenant %s (uid %s) erased and verified", key, tgt.Name, tgt.UID)
	return false, nil
}

// orphanSteps are the erasure steps of each kind of orphan: a namespace has
// every step (read from its marks), a volume only the store's, a data key
// only its destruction.
var orphanSteps = map[string][]erasureStep{
	"Namespace":        erasureSteps,
	"PersistentVolume": {stepDeleteStorage},
	"Secret":           {stepDestroyKey},
}

// listDataKeys lists the tenants' data key Secrets in the operator's
// namespace, metadata only (their values are never read by the sweep).
func (s *OrphanSweeper) listDataKeys(ctx context.Context, l *listing) error {
	if s.Eraser.Namespace == "" {
		return nil
	}
	err := s.listMetadata(ctx, l, "Secret", &l.keys, client.InNamespace(s.Eraser.Namespace),
		client.MatchingLabels{labelComponent: componentDataKey, platformv1.LabelManagedBy: platformv1.ManagedByValue})
	if err != nil {
		return fmt.Errorf("list data keys: %w", err)
	}
	return nil
}

// orphanedKeys are the data keys bound (by the UID mark) to a Tenant that no
// longer exists. Keys are listed before Tenants, so a Tenant created
// meanwhile is listed with its key. Unlike a namespace, a key is never
// taken over by a Tenant re-created under the same name: its name and mark
// hold the UID it was made for.
func orphanedKeys(keys []*metav1.PartialObjectMetadata, tenants liveTenants) []*metav1.PartialObjectMetadata {
	var out []*metav1.PartialObjectMetadata
	for _, k := range keys {
		uid := k.Annotations[AnnotationTenantUID]
		if _, live := tenants.byUID[types.UID(uid)]; uid != "" && k.Labels[platformv1.LabelTenant] != "" && !live {
			out = append(out, k)
		}
	}
	return out
}

// sweepKey destroys the data key of a Tenant that is gone, once the grace
// period since it was found has passed.
func (s *OrphanSweeper) sweepKey(ctx context.Context, key *metav1.PartialObjectMetadata) (bool, error) {
	if due, err := s.due(ctx, key, "Secret"); err != nil || !due {
		return false, err
	}
	tgt := &erasureTarget{
		tenantRef: tenantRef{Name: key.Labels[platformv1.LabelTenant], UID: types.UID(key.Annotations[AnnotationTenantUID])},
		Regarding: key,
	}
	return s.erase(ctx, "Secret/"+key.Name, tgt, nil)
}

func (s *OrphanSweeper) remember(key string, tgt *erasureTarget) {
	if s.deleting == nil {
		s.deleting = map[string]*erasureTarget{}
	}
	s.deleting[key] = tgt
}

// failed reports a step that could not be done; the sweep retries it.
func (s *OrphanSweeper) failed(ctx context.Context, regarding runtime.Object, step string, err error) {
	orphanStepFailures.WithLabelValues(step).Inc()
	logf.FromContext(ctx).Error(err, "Orphan erasure step failed; retrying", "step", step)
	s.Recorder.Eventf(regarding, nil, corev1.EventTypeWarning, "ErasureStepFailed", "Sweep",
		"erasure step %s failed and will be retried: %v", step, err)
}
