package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// erasurePoll is how often a step that waits for the API server (a
// terminating namespace, a volume being released) is looked at again.
const erasurePoll = 5 * time.Second

// reconcileDeactivated stops ingest at once, waits for the scheduled time
// and then erases the tenant's data step by step, each step verified and
// recorded in status so that a restarted operator resumes where it stopped.
func (r *TenantReconciler) reconcileDeactivated(ctx context.Context, t *platformv1.Tenant) (ctrl.Result, error) {
	now := r.Clock.Now()
	if t.Status.ErasedAt == nil {
		r.recordDeactivation(t, now)
	}
	r.reportRisk(t, now)
	if !stepDone(t, stepDeleteWorker) {
		// The worker's last word on its files, kept for the erasure record: the
		// report goes with the worker, before the storage step that erases them.
		r.refreshFiles(ctx, t)
	}

	step, wait := erasurePlan(t, now)
	var tgt *erasureTarget
	if step != stepNone && wait == 0 {
		var err error
		if tgt, err = r.targetForTenant(ctx, t); err != nil {
			return ctrl.Result{}, err
		}
	}
	for step != stepNone && wait == 0 {
		verification, done, err := r.runStep(ctx, tgt, step)
		keepVolume(t, tgt)
		if err != nil {
			r.stepFailed(t, step, err)
			setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionErasing, true, "StepFailed",
				fmt.Sprintf("step %s failed, retrying: %v", step, err))
			// A step that keeps failing (a database server down) must still
			// show the tenant as erasing, not as it was while active.
			r.setErasurePhase(t, now)
			return ctrl.Result{}, fmt.Errorf("erasure step %s: %w", step, err)
		}
		if !done {
			setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionErasing, true, "InProgress",
				fmt.Sprintf("step %s: %s", step, verification))
			r.setErasurePhase(t, now)
			return ctrl.Result{RequeueAfter: erasurePoll}, nil
		}
		logf.FromContext(ctx).Info("Erasure step done", "step", step, "verification", verification)
		recordStep(t, step, r.Clock.Now(), verification)
		if step == stepDeleteStorage {
			recordErasedFiles(t)
		}
		if step == stepDestroyKey {
			t.Status.Encryption = nil // the key it described is gone
		}
		step, wait = erasurePlan(t, now)
	}
	if step == stepNone {
		return r.finishErasure(ctx, t)
	}
	setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionErasing, true, "Scheduled",
		fmt.Sprintf("ingest stopped; data will be erased at %s", t.Status.ErasureScheduledAt.UTC().Format(time.RFC3339)))
	r.setErasurePhase(t, now)
	return ctrl.Result{RequeueAfter: nextWake(t, now, wait)}, nil
}

// stepFailed reports a failing erasure step (a key Secret that cannot be
// deleted, a database server down) once per step in a Warning Event, and on
// every failure in a metric; the step is retried and never recorded done.
func (r *TenantReconciler) stepFailed(t *platformv1.Tenant, step erasureStep, err error) {
	erasureStepFailures.WithLabelValues(string(step)).Inc()
	c := meta.FindStatusCondition(t.Status.Conditions, platformv1.ConditionErasing)
	if c != nil && c.Reason == "StepFailed" && strings.HasPrefix(c.Message, "step "+string(step)+" ") {
		return
	}
	r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, "ErasureStepFailed", "Erase",
		"erasure step %s failed and will be retried: %v", step, err)
}

// recordDeactivation stamps the schedule once. The times live in status, in
// the API server, so that they survive operator restarts.
func (r *TenantReconciler) recordDeactivation(t *platformv1.Tenant, now time.Time) {
	if t.Status.DeactivatedAt != nil {
		return
	}
	at := metav1.NewTime(now.UTC().Truncate(time.Second))
	t.Status.DeactivatedAt = &at
	t.Status.ErasureScheduledAt = ptrTime(at.Add(t.EffectiveGracePeriod()))
	t.Status.ErasureDeadline = ptrTime(at.Add(platformv1.ErasureDeadlineAfterDeactivation))
	why := "deactivated"
	if !t.DeletionTimestamp.IsZero() {
		why = "deleted"
	}
	r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "Deactivated", "Deactivate",
		"tenant %s: ingest stopped; all data will be erased at %s (deadline %s)", why,
		t.Status.ErasureScheduledAt.UTC().Format(time.RFC3339), t.Status.ErasureDeadline.UTC().Format(time.RFC3339))
}

// keepVolume copies a volume the erasure recorded into status, beside the
// namespace's mark.
func keepVolume(t *platformv1.Tenant, tgt *erasureTarget) {
	if tgt.Volume == "" || tgt.Backend != platformv1.StorageSQLite {
		return
	}
	if t.Status.Storage == nil {
		t.Status.Storage = &platformv1.StorageStatus{Backend: platformv1.StorageSQLite, ClaimName: DataClaimName}
	}
	t.Status.Storage.VolumeName = tgt.Volume
}

func ptrTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}

func (r *TenantReconciler) setErasurePhase(t *platformv1.Tenant, now time.Time) {
	// A deactivated tenant waiting for its scheduled erasure is what its spec
	// asks for (Ready, kstatus Current): the wait may last days, and GitOps
	// tools must not time out on it.
	t.Status.Phase = platformv1.TenantPhaseDeactivated
	ready, reason, msg := true, platformv1.ReasonDeactivated, "tenant is deactivated; ingest is stopped"
	if erasureStarted(t, now) {
		t.Status.Phase = platformv1.TenantPhaseErasing
		ready, reason, msg = false, "Erasing", "tenant data is being erased"
	}
	if t.Spec.State == platformv1.TenantActive && t.DeletionTimestamp.IsZero() {
		ready, reason, msg = false, platformv1.ReasonReactivationRefused, "erasure has started and cannot be undone: create a new Tenant to onboard the business again"
	}
	setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionReady, ready, reason, msg)
}

// reportRisk raises ErasureAtRisk, a Warning Event and the overdue metric
// when the erasure is not complete a day before its deadline.
func (r *TenantReconciler) reportRisk(t *platformv1.Tenant, now time.Time) {
	if t.Status.ErasureDeadline == nil {
		return
	}
	erasureDeadlineGauge.WithLabelValues(t.Name).Set(float64(t.Status.ErasureDeadline.Unix()))
	if !erasureAtRisk(t, now) {
		erasureAtRiskGauge.WithLabelValues(t.Name).Set(0)
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionErasureAtRisk, false, "OnSchedule",
			fmt.Sprintf("erasure deadline %s", t.Status.ErasureDeadline.UTC().Format(time.RFC3339)))
		return
	}
	erasureAtRiskGauge.WithLabelValues(t.Name).Set(1)
	// FindStatusCondition points into the slice that setCondition changes:
	// read the previous state first.
	wasAtRisk := meta.IsStatusConditionTrue(t.Status.Conditions, platformv1.ConditionErasureAtRisk)
	msg := fmt.Sprintf("erasure is not complete and its deadline %s is less than %s away", t.Status.ErasureDeadline.UTC().Format(time.RFC3339), atRiskBefore)
	setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionErasureAtRisk, true, "DeadlineNear", msg)
	if !wasAtRisk {
		r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, "ErasureAtRisk", "Erase", msg)
	}
}

func recordStep(t *platformv1.Tenant, s erasureStep, at time.Time, verification string) {
	done := metav1.NewTime(at.UTC().Truncate(time.Second))
	for i := range t.Status.Erasure {
		if t.Status.Erasure[i].Name == string(s) {
			t.Status.Erasure[i].CompletedAt, t.Status.Erasure[i].Verification = &done, verification
			return
		}
	}
	t.Status.Erasure = append(t.Status.Erasure, platformv1.ErasureStep{Name: string(s), CompletedAt: &done, Verification: verification})
}

// refreshFiles copies the worker's last shared-files report into status.files,
// best effort: a report that cannot be read leaves the last copy, and never holds
// up an erasure.
func (r *TenantReconciler) refreshFiles(ctx context.Context, t *platformv1.Tenant) {
	var cm corev1.ConfigMap
	key := types.NamespacedName{Namespace: t.NamespaceName(), Name: platformv1.WorkerReportName}
	if err := r.Get(ctx, key, &cm); err != nil {
		if !apierrors.IsNotFound(err) {
			logf.FromContext(ctx).V(1).Info("Cannot read the worker report; status.files keeps its last copy", "error", err.Error())
		}
		return
	}
	t.Status.Files = filesStatus(cm.Data[platformv1.WorkerReportMediaKey], t.Status.Files)
}

// recordErasedFiles writes into the DeleteStorage record how many shared files and
// bytes went with the store, as the worker last reported them (status.files), and
// clears status.files: nothing is stored any more. Run again, it leaves the record.
func recordErasedFiles(t *platformv1.Tenant) {
	f := t.Status.Files
	if f == nil {
		return
	}
	for i := range t.Status.Erasure {
		if rec := &t.Status.Erasure[i]; rec.Name == string(stepDeleteStorage) {
			files, bytes := f.Fetched, f.StoredBytes
			rec.Files, rec.FileBytes = &files, &bytes
		}
	}
	t.Status.Files = nil
}

// finishErasure records the verified erasure and lets a deleted Tenant go.
func (r *TenantReconciler) finishErasure(ctx context.Context, t *platformv1.Tenant) (ctrl.Result, error) {
	now := r.Clock.Now()
	justErased := t.Status.ErasedAt == nil
	if justErased {
		at := metav1.NewTime(now.UTC().Truncate(time.Second))
		t.Status.ErasedAt = &at
		if t.Status.DeactivatedAt != nil {
			erasureDuration.Observe(at.Sub(t.Status.DeactivatedAt.Time).Seconds())
		}
		r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "Erased", "Erase",
			"all tenant data erased and verified (%d steps)", len(t.Status.Erasure))
	}
	t.Status.Phase = platformv1.TenantPhaseErased
	t.Status.Storage, t.Status.Files = nil, nil
	meta.RemoveStatusCondition(&t.Status.Conditions, platformv1.ConditionErasureAtRisk)
	for _, c := range []string{platformv1.ConditionNamespaceReady, platformv1.ConditionStorageReady, platformv1.ConditionWorkerReady, platformv1.ConditionRouteReady} {
		meta.RemoveStatusCondition(&t.Status.Conditions, c)
	}
	setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionErasing, false, "Complete", "erasure complete")
	setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionErased, true, "Verified",
		fmt.Sprintf("all tenant data erased at %s; see status.erasure", t.Status.ErasedAt.UTC().Format(time.RFC3339)))
	// Erased is the end its spec (Deactivated, or deleted) asks for: Ready.
	ready, reason, msg := true, "Erased", "tenant data is erased"
	if t.Spec.State == platformv1.TenantActive && t.DeletionTimestamp.IsZero() {
		ready, reason, msg = false, platformv1.ReasonReactivationRefused, "an erased tenant cannot be reactivated: create a new Tenant to onboard the business again"
	}
	setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionReady, ready, reason, msg)
	forgetTenantMetrics(t.Name)

	if !t.DeletionTimestamp.IsZero() && controllerutil.ContainsFinalizer(t, platformv1.TenantFinalizer) {
		if justErased {
			// Let the deferred status write store the record first: the
			// finalizer goes only once the record is in the API server.
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		orig := t.DeepCopy()
		controllerutil.RemoveFinalizer(t, platformv1.TenantFinalizer)
		if err := r.Patch(ctx, t, client.MergeFrom(orig)); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("remove erasure finalizer: %w", err))
		}
	}
	return ctrl.Result{}, nil
}

// cancelDeactivation clears the schedule of a tenant reactivated before its
// erasure started.
func (r *TenantReconciler) cancelDeactivation(t *platformv1.Tenant) {
	t.Status.DeactivatedAt, t.Status.ErasureScheduledAt, t.Status.ErasureDeadline = nil, nil, nil
	t.Status.Erasure = nil
	meta.RemoveStatusCondition(&t.Status.Conditions, platformv1.ConditionErasing)
	meta.RemoveStatusCondition(&t.Status.Conditions, platformv1.ConditionErasureAtRisk)
	forgetTenantMetrics(t.Name)
	r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "Reactivated", "Reactivate", "tenant reactivated; the scheduled erasure is cancelled")
}

// ensureFinalizer adds the erasure finalizer with a patch (no conflict with
// concurrent status writes).
func (r *TenantReconciler) ensureFinalizer(ctx context.Context, t *platformv1.Tenant) error {
	if controllerutil.ContainsFinalizer(t, platformv1.TenantFinalizer) {
		return nil
	}
	orig := t.DeepCopy()
	controllerutil.AddFinalizer(t, platformv1.TenantFinalizer)
	if err := r.Patch(ctx, t, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("add erasure finalizer: %w", err)
	}
	return nil
}
