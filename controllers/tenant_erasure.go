package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
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

	step, wait := erasurePlan(t, now)
	for step != stepNone && wait == 0 {
		verification, done, err := r.runStep(ctx, t, step)
		if err != nil {
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
		recordStep(t, step, r.Clock.Now(), verification)
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

// runStep performs one step; done is true once the step is verified
// complete, and verification says how (or what it is waiting for).
func (r *TenantReconciler) runStep(ctx context.Context, t *platformv1.Tenant, s erasureStep) (string, bool, error) {
	logf.FromContext(ctx).Info("Erasure step", "step", s)
	switch s {
	case stepStopIngest:
		return r.stopIngest(ctx, t)
	case stepDeleteWorker:
		return r.deleteWorker(ctx, t)
	case stepDeleteStorage:
		return r.deleteStorage(ctx, t)
	case stepDeleteNamespace:
		return r.deleteNamespace(ctx, t)
	}
	return "", false, fmt.Errorf("unknown erasure step %q", s)
}

// stopIngest removes the route from Meta and scales the worker to zero:
// with no worker, nothing more is stored.
func (r *TenantReconciler) stopIngest(ctx context.Context, t *platformv1.Tenant) (string, bool, error) {
	ns := t.NamespaceName()
	routeGone, err := r.removeRoute(ctx, t)
	if err != nil {
		return "", false, fmt.Errorf("remove route: %w", err)
	}
	if !routeGone {
		return "waiting for the route to be gone", false, nil
	}
	var dep appsv1.Deployment
	err = r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: WorkerName}, &dep)
	switch {
	case apierrors.IsNotFound(err):
		return "route removed; no worker Deployment", true, nil
	case err != nil:
		return "", false, fmt.Errorf("get worker deployment: %w", err)
	case !labelledForTenant(&dep, t):
		return "route removed; worker Deployment is not the tenant's, left alone", true, nil
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 0 {
		scale := appsv1ac.Deployment(WorkerName, ns).WithSpec(appsv1ac.DeploymentSpec().WithReplicas(0))
		if err := r.Apply(ctx, scale, client.FieldOwner(fieldOwner+"-erasure"), client.ForceOwnership); err != nil {
			return "", false, fmt.Errorf("scale worker to zero: %w", err)
		}
		return "scaling the worker Deployment to 0", false, nil
	}
	return "route removed; worker Deployment scaled to 0 replicas", true, nil
}

// deleteWorker removes the worker and everything that lets it run.
func (r *TenantReconciler) deleteWorker(ctx context.Context, t *platformv1.Tenant) (string, bool, error) {
	key := types.NamespacedName{Namespace: t.NamespaceName(), Name: WorkerName}
	var pending []string
	for _, obj := range []client.Object{
		&appsv1.Deployment{}, &corev1.Service{}, &networkingv1.NetworkPolicy{},
		&rbacv1.RoleBinding{}, &rbacv1.Role{}, &corev1.ServiceAccount{},
	} {
		gone, err := r.deleteOwned(ctx, t, key, obj)
		if err != nil {
			return "", false, err
		}
		if !gone {
			pending = append(pending, fmt.Sprintf("%T", obj)[1:])
		}
	}
	if len(pending) > 0 {
		return "waiting for " + strings.Join(pending, ", ") + " to be gone", false, nil
	}
	return "Deployment, Service, NetworkPolicy, RoleBinding, Role and ServiceAccount " + WorkerName + " not found", true, nil
}

// deleteOwned deletes one object if it is the tenant's and reports whether
// it is gone, read around the cache.
func (r *TenantReconciler) deleteOwned(ctx context.Context, t *platformv1.Tenant, key types.NamespacedName, obj client.Object) (bool, error) {
	if err := r.APIReader.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, fmt.Errorf("get %T %s: %w", obj, key, err)
	}
	if !labelledForTenant(obj, t) {
		return true, nil // never destroy what we did not create
	}
	if obj.GetDeletionTimestamp() == nil {
		if err := r.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
			return false, fmt.Errorf("delete %T %s: %w", obj, key, err)
		}
	}
	return false, nil
}

func labelledForTenant(obj client.Object, t *platformv1.Tenant) bool {
	return obj.GetLabels()[platformv1.LabelTenant] == t.Name &&
		obj.GetLabels()[platformv1.LabelManagedBy] == platformv1.ManagedByValue
}

// deleteStorage deletes the data claim and makes sure its volume does not
// outlive it: a Retain reclaim policy is switched to Delete first, and a
// volume left behind is deleted explicitly. A PostgreSQL tenant's database
// and role are dropped instead (its Secret goes with the namespace).
func (r *TenantReconciler) deleteStorage(ctx context.Context, t *platformv1.Tenant) (string, bool, error) {
	if storageBackend(t) == platformv1.StoragePostgreSQL {
		return r.dropPostgres(ctx, t)
	}
	key := types.NamespacedName{Namespace: t.NamespaceName(), Name: DataClaimName}
	var pvc corev1.PersistentVolumeClaim
	err := r.APIReader.Get(ctx, key, &pvc)
	switch {
	case err != nil && !apierrors.IsNotFound(err):
		return "", false, fmt.Errorf("get data claim: %w", err)
	case err == nil && labelledForTenant(&pvc, t):
		if v := pvc.Spec.VolumeName; v != "" && (t.Status.Storage == nil || t.Status.Storage.VolumeName != v) {
			// Record the volume before the claim goes: once the claim is
			// deleted, status is the only place that still names it.
			if t.Status.Storage == nil {
				t.Status.Storage = &platformv1.StorageStatus{Backend: platformv1.StorageSQLite, ClaimName: DataClaimName}
			}
			t.Status.Storage.VolumeName = v
			return "recording volume " + v + " before deleting the claim", false, nil
		}
		if err := r.forceReclaimDelete(ctx, pvc.Spec.VolumeName, key); err != nil {
			return "", false, err
		}
		if pvc.DeletionTimestamp == nil {
			if err := r.Delete(ctx, &pvc); client.IgnoreNotFound(err) != nil {
				return "", false, fmt.Errorf("delete data claim: %w", err)
			}
		}
		return "waiting for PersistentVolumeClaim " + key.String() + " to be gone", false, nil
	}
	volume := ""
	if t.Status.Storage != nil {
		volume = t.Status.Storage.VolumeName
	}
	if volume == "" {
		return "PersistentVolumeClaim " + key.String() + " not found; no volume was bound", true, nil
	}
	var pv corev1.PersistentVolume
	err = r.APIReader.Get(ctx, types.NamespacedName{Name: volume}, &pv)
	switch {
	case apierrors.IsNotFound(err):
		return "PersistentVolumeClaim " + key.String() + " and PersistentVolume " + volume + " not found", true, nil
	case err != nil:
		return "", false, fmt.Errorf("get volume %s: %w", volume, err)
	case !claimedBy(&pv, key):
		return "PersistentVolumeClaim " + key.String() + " not found; volume " + volume + " now belongs to another claim", true, nil
	}
	if err := r.forceReclaimDelete(ctx, volume, key); err != nil {
		return "", false, err
	}
	if pv.DeletionTimestamp == nil {
		if err := r.Delete(ctx, &pv); client.IgnoreNotFound(err) != nil {
			return "", false, fmt.Errorf("delete volume %s: %w", volume, err)
		}
	}
	return "waiting for PersistentVolume " + volume + " to be gone", false, nil
}

func claimedBy(pv *corev1.PersistentVolume, claim types.NamespacedName) bool {
	ref := pv.Spec.ClaimRef
	return ref != nil && ref.Namespace == claim.Namespace && ref.Name == claim.Name
}

// forceReclaimDelete makes the claim's volume go with it: with Retain, the
// data would stay on a Released volume after the claim is deleted.
func (r *TenantReconciler) forceReclaimDelete(ctx context.Context, volume string, claim types.NamespacedName) error {
	if volume == "" {
		return nil
	}
	var pv corev1.PersistentVolume
	if err := r.APIReader.Get(ctx, types.NamespacedName{Name: volume}, &pv); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !claimedBy(&pv, claim) || pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete {
		return nil
	}
	patch := client.MergeFrom(pv.DeepCopy())
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
	if err := r.Patch(ctx, &pv, patch); err != nil {
		return fmt.Errorf("set reclaim policy of volume %s to Delete: %w", volume, err)
	}
	return nil
}

// deleteNamespace deletes the tenant's namespace, with its Secrets,
// channels and deletion requests, and waits until it is gone.
func (r *TenantReconciler) deleteNamespace(ctx context.Context, t *platformv1.Tenant) (string, bool, error) {
	name := t.NamespaceName()
	var ns corev1.Namespace
	err := r.APIReader.Get(ctx, types.NamespacedName{Name: name}, &ns)
	switch {
	case apierrors.IsNotFound(err):
		return "Namespace " + name + " not found", true, nil
	case err != nil:
		return "", false, fmt.Errorf("get namespace: %w", err)
	case ns.Labels[platformv1.LabelTenant] != t.Name:
		return "Namespace " + name + " is not the tenant's; left alone", true, nil
	}
	if ns.DeletionTimestamp == nil {
		if err := r.Delete(ctx, &ns); client.IgnoreNotFound(err) != nil {
			return "", false, fmt.Errorf("delete namespace: %w", err)
		}
	}
	return "waiting for Namespace " + name + " to be gone" + namespaceBlockers(&ns), false, nil
}

// namespaceBlockers names what keeps a namespace terminating, so that an SRE
// sees it in the Erasing condition.
func namespaceBlockers(ns *corev1.Namespace) string {
	var why []string
	for _, c := range ns.Status.Conditions {
		if c.Status == corev1.ConditionTrue && strings.HasPrefix(string(c.Type), "Namespace") && c.Type != corev1.NamespaceDeletionDiscoveryFailure {
			why = append(why, c.Message)
		}
	}
	if len(why) == 0 {
		return ""
	}
	return ": " + strings.Join(why, "; ")
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
	t.Status.Storage = nil
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
