package controllers

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
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

// annotationVolume remembers an orphan namespace's volume before its claim
// goes, as status does for a live Tenant.
const annotationVolume = "platform.omniflowcrm.com/volume"

var (
	orphansFound = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "omniflow_orphans",
		Help: "Tenant namespaces and volumes whose Tenant no longer exists, found by the last sweep.",
	}, []string{"kind"})
	sweepStoodDown = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "omniflow_orphan_sweep_stood_down",
		Help: "1 when the last orphan sweep refused to act (Tenant CRD missing, or too many tenants looked orphaned at once).",
	})
)

func init() { metrics.Registry.MustRegister(orphansFound, sweepStoodDown) }

// OrphanSweeper finds the data of tenants that vanished without their
// erasure (someone force-removed the finalizer, or deleted the Tenant
// while the operator was not installed) and erases it after the grace
// period, counted from when it was found. It never turns into a mass
// deletion: when the Tenant CRD is missing, or when more than a share of
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
}

// NeedLeaderElection: only the leader sweeps.
func (s *OrphanSweeper) NeedLeaderElection() bool { return true }

// Start sweeps at once and then every Interval until ctx ends.
func (s *OrphanSweeper) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("orphan-sweep")
	ctx = logf.IntoContext(ctx, log)
	for {
		busy, err := s.Sweep(ctx)
		if err != nil {
			log.Error(err, "Orphan sweep failed")
		}
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

// Sweep runs one pass. busy reports an erasure still in progress.
func (s *OrphanSweeper) Sweep(ctx context.Context) (busy bool, err error) {
	log := logf.FromContext(ctx)
	var tenants platformv1.TenantList
	if err := s.APIReader.List(ctx, &tenants); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			sweepStoodDown.Set(1)
			log.Error(err, "Tenant CRD is missing: the orphan sweep stands down rather than treat every tenant as gone")
			return false, nil
		}
		return false, fmt.Errorf("list tenants: %w", err)
	}
	live := make(map[string]bool, len(tenants.Items))
	for _, t := range tenants.Items {
		live[t.Name] = true
	}
	sel, err := tenantLabelSelector()
	if err != nil {
		return false, err
	}
	var nss corev1.NamespaceList
	if err := s.APIReader.List(ctx, &nss, client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return false, fmt.Errorf("list tenant namespaces: %w", err)
	}
	var pvs corev1.PersistentVolumeList
	if err := s.APIReader.List(ctx, &pvs, client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return false, fmt.Errorf("list tenant volumes: %w", err)
	}

	var orphanNS []*corev1.Namespace
	for i := range nss.Items {
		ns := &nss.Items[i]
		if live[ns.Labels[platformv1.LabelTenant]] {
			if err := s.adopted(ctx, ns); err != nil {
				return false, err
			}
			continue
		}
		orphanNS = append(orphanNS, ns)
	}
	var orphanPV []*corev1.PersistentVolume
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		if !live[pv.Labels[platformv1.LabelTenant]] && pv.Status.Phase != corev1.VolumeBound {
			orphanPV = append(orphanPV, pv)
		}
	}
	orphansFound.WithLabelValues("namespace").Set(float64(len(orphanNS)))
	orphansFound.WithLabelValues("volume").Set(float64(len(orphanPV)))

	if tooMany(len(orphanNS), len(nss.Items), s.MaxOrphanShare) {
		sweepStoodDown.Set(1)
		log.Error(nil, "Too many tenant namespaces look orphaned at once: the orphan sweep stands down; check the Tenant objects (a CRD reinstall or a restore?)",
			"orphaned", len(orphanNS), "tenantNamespaces", len(nss.Items), "maxShare", s.MaxOrphanShare)
		return false, nil
	}
	sweepStoodDown.Set(0)

	for _, ns := range orphanNS {
		b, err := s.sweepNamespace(ctx, ns)
		if err != nil {
			return busy, fmt.Errorf("namespace %s: %w", ns.Name, err)
		}
		busy = busy || b
	}
	for _, pv := range orphanPV {
		b, err := s.sweepVolume(ctx, pv)
		if err != nil {
			return busy, fmt.Errorf("volume %s: %w", pv.Name, err)
		}
		busy = busy || b
	}
	return busy, nil
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

// adopted clears the orphan stamp of a namespace whose Tenant came back.
func (s *OrphanSweeper) adopted(ctx context.Context, ns *corev1.Namespace) error {
	if _, ok := ns.Annotations[AnnotationOrphanedAt]; !ok {
		return nil
	}
	patch := client.MergeFrom(ns.DeepCopy())
	delete(ns.Annotations, AnnotationOrphanedAt)
	if err := s.Eraser.Patch(ctx, ns, patch); err != nil {
		return fmt.Errorf("clear orphan stamp of %s: %w", ns.Name, err)
	}
	s.Recorder.Eventf(ns, nil, corev1.EventTypeNormal, "Adopted", "Sweep",
		"Tenant %s exists again and adopts namespace %s; its data is kept", ns.Labels[platformv1.LabelTenant], ns.Name)
	return nil
}

// stamp records when an orphan was found, once, and reports that time.
func (s *OrphanSweeper) stamp(ctx context.Context, log logr.Logger, obj client.Object, kind string) (time.Time, bool, error) {
	if v, ok := obj.GetAnnotations()[AnnotationOrphanedAt]; ok {
		if at, err := time.Parse(time.RFC3339, v); err == nil {
			return at, false, nil
		}
		// A stamp someone mangled counts from now: never erase early.
	}
	now := s.Clock.Now().UTC().Truncate(time.Second)
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationOrphanedAt] = now.Format(time.RFC3339)
	obj.SetAnnotations(ann)
	if err := s.Eraser.Patch(ctx, obj, patch); err != nil {
		return now, false, fmt.Errorf("stamp orphan: %w", err)
	}
	log.Info("Found orphaned tenant data", "kind", kind, "name", obj.GetName(), "tenant", obj.GetLabels()[platformv1.LabelTenant])
	s.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, "Orphaned", "Sweep",
		"%s %s belongs to Tenant %s, which does not exist; it will be erased at %s unless the Tenant is created again",
		kind, obj.GetName(), obj.GetLabels()[platformv1.LabelTenant], now.Add(s.GracePeriod).Format(time.RFC3339))
	return now, true, nil
}

// sweepNamespace erases an orphan namespace the way a Tenant's erasure
// would, once the grace period since it was found has passed.
func (s *OrphanSweeper) sweepNamespace(ctx context.Context, ns *corev1.Namespace) (bool, error) {
	log := logf.FromContext(ctx)
	foundAt, _, err := s.stamp(ctx, log, ns, "Namespace")
	if err != nil || s.Clock.Now().Before(foundAt.Add(s.GracePeriod)) {
		return false, err
	}
	// The erasure steps work on a Tenant; this one is rebuilt from the labels,
	// and its status lives in the namespace's annotations until it goes.
	t := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: ns.Labels[platformv1.LabelTenant]}}
	t.Spec.Namespace = ns.Name
	t.Status.Storage = &platformv1.StorageStatus{ClaimName: DataClaimName, VolumeName: ns.Annotations[annotationVolume]}
	for _, step := range []erasureStep{stepDeleteWorker, stepDeleteStorage, stepDeleteNamespace} {
		before := t.Status.Storage.VolumeName
		verification, done, err := s.Eraser.runStep(ctx, t, step)
		if err != nil {
			return true, err
		}
		if v := t.Status.Storage.VolumeName; v != before {
			if err := s.annotate(ctx, ns, annotationVolume, v); err != nil {
				return true, err
			}
			return true, nil
		}
		if !done {
			return true, nil
		}
		log.Info("Orphan erasure step done", "namespace", ns.Name, "step", step, "verification", verification)
	}
	s.Recorder.Eventf(ns, nil, corev1.EventTypeNormal, "Erased", "Sweep",
		"orphaned namespace %s of Tenant %s erased and verified", ns.Name, t.Name)
	return false, nil
}

func (s *OrphanSweeper) annotate(ctx context.Context, obj client.Object, key, value string) error {
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[key] = value
	obj.SetAnnotations(ann)
	if err := s.Eraser.Patch(ctx, obj, patch); err != nil {
		return fmt.Errorf("annotate %s: %w", obj.GetName(), err)
	}
	return nil
}

// sweepVolume deletes a released tenant volume whose Tenant is gone.
func (s *OrphanSweeper) sweepVolume(ctx context.Context, pv *corev1.PersistentVolume) (bool, error) {
	foundAt, _, err := s.stamp(ctx, logf.FromContext(ctx), pv, "PersistentVolume")
	if err != nil || s.Clock.Now().Before(foundAt.Add(s.GracePeriod)) {
		return false, err
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		patch := client.MergeFrom(pv.DeepCopy())
		pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
		if err := s.Eraser.Patch(ctx, pv, patch); err != nil {
			return true, fmt.Errorf("set reclaim policy to Delete: %w", err)
		}
	}
	if pv.DeletionTimestamp == nil {
		if err := s.Eraser.Delete(ctx, pv); client.IgnoreNotFound(err) != nil {
			return true, fmt.Errorf("delete: %w", err)
		}
		s.Recorder.Eventf(pv, nil, corev1.EventTypeNormal, "Erased", "Sweep",
			"orphaned volume %s of Tenant %s deleted", pv.Name, pv.Labels[platformv1.LabelTenant])
	}
	return true, nil
}
