package controllers

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// erasureStep is one idempotent, verified step of a tenant's erasure.
type erasureStep string

const (
	// stepStopIngest runs at once on deactivation: the route goes and the
	// worker is scaled to zero, so nothing more is stored.
	stepStopIngest erasureStep = "StopIngest"
	// The destructive steps run at erasureScheduledAt, in this order.
	// stepDestroyKey comes first: once the tenant's data key is gone, no
	// copy of its store (a snapshot, a backup, a volume or database whose
	// deletion fails) can be read any more, whatever the later steps meet.
	// It cannot come before the grace period, as StopIngest does: until
	// erasure starts, the tenant may be reactivated with its data.
	stepDestroyKey      erasureStep = "DestroyKey"
	stepDeleteWorker    erasureStep = "DeleteWorker"
	stepDeleteStorage   erasureStep = "DeleteStorage"
	stepDeleteNamespace erasureStep = "DeleteNamespace"
	// stepNone: every step is complete.
	stepNone erasureStep = ""
)

// erasureSteps is the order of the erasure.
var erasureSteps = []erasureStep{stepStopIngest, stepDestroyKey, stepDeleteWorker, stepDeleteStorage, stepDeleteNamespace}

// atRiskBefore is how long before the deadline an unfinished erasure raises
// the alarm: a day leaves an SRE time to act.
const atRiskBefore = 24 * time.Hour

// erasurePlan says which step comes next for a deactivated tenant and, when
// that step must wait for the scheduled time, how long. It never returns
// stepNone while a step is unrecorded.
func erasurePlan(t *platformv1.Tenant, now time.Time) (erasureStep, time.Duration) {
	s := nextStep(func(s erasureStep) bool { return stepDone(t, s) })
	if s != stepNone && s != stepStopIngest && t.Status.ErasureScheduledAt != nil {
		if wait := t.Status.ErasureScheduledAt.Sub(now); wait > 0 {
			return s, wait
		}
	}
	return s, 0
}

// nextStep is the first step of the erasure not done yet, in order, for the
// Tenant reconciler (done from status) and the orphan sweep (done from the
// namespace's record) alike; stepNone when every step is done.
func nextStep(done func(erasureStep) bool) erasureStep {
	for _, s := range erasureSteps {
		if !done(s) {
			return s
		}
	}
	return stepNone
}

// syncSchedule keeps status.gracePeriod and status.erasureScheduledAt in
// agreement. Until erasure has started, the schedule follows the spec:
// deactivatedAt plus the grace period in force now, so shortening the grace
// period erases sooner and lengthening it (up to 13 days) later. Once erasure
// has started (its time has come, or a destructive step is on record)
// nothing moves, and status.gracePeriod shows the value the erasure runs
// with. It reports whether the schedule moved.
func syncSchedule(t *platformv1.Tenant, now time.Time) (moved bool) {
	grace := t.EffectiveGracePeriod()
	if t.Status.DeactivatedAt != nil && t.Status.ErasureScheduledAt != nil && erasureStarted(t, now) {
		grace = t.Status.ErasureScheduledAt.Sub(t.Status.DeactivatedAt.Time)
	} else if t.Status.DeactivatedAt != nil {
		at := t.Status.DeactivatedAt.Add(grace)
		moved = t.Status.ErasureScheduledAt != nil && !t.Status.ErasureScheduledAt.Time.Equal(at)
		t.Status.ErasureScheduledAt = ptrTime(at)
	}
	t.Status.GracePeriod = &metav1.Duration{Duration: grace}
	return moved
}

func stepDone(t *platformv1.Tenant, s erasureStep) bool {
	for _, rec := range t.Status.Erasure {
		if rec.Name == string(s) && rec.CompletedAt != nil {
			return true
		}
	}
	return false
}

// erasureStarted reports whether a destructive step may have run: from then
// on the tenant cannot be reactivated.
func erasureStarted(t *platformv1.Tenant, now time.Time) bool {
	if t.Status.ErasedAt != nil {
		return true
	}
	if t.Status.ErasureScheduledAt != nil && !now.Before(t.Status.ErasureScheduledAt.Time) {
		return true
	}
	for _, s := range erasureSteps[1:] {
		if stepDone(t, s) {
			return true
		}
	}
	return false
}

// erasureAtRisk: the erasure is not complete a day before its deadline.
func erasureAtRisk(t *platformv1.Tenant, now time.Time) bool {
	if t.Status.ErasedAt != nil || t.Status.ErasureDeadline == nil {
		return false
	}
	return !now.Before(t.Status.ErasureDeadline.Add(-atRiskBefore))
}

// nextWake is when a waiting deactivated tenant must be looked at again:
// the scheduled erasure or the at-risk alarm, whichever comes first.
func nextWake(t *platformv1.Tenant, now time.Time, wait time.Duration) time.Duration {
	if t.Status.ErasureDeadline != nil && !erasureAtRisk(t, now) {
		if d := t.Status.ErasureDeadline.Add(-atRiskBefore).Sub(now); d > 0 && (wait == 0 || d < wait) {
			return d
		}
	}
	return wait
}
