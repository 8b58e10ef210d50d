package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

var t0 = time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)

func deactivated(at time.Time, grace time.Duration, done ...erasureStep) *platformv1.Tenant {
	t := &platformv1.Tenant{}
	t.Status.DeactivatedAt = ptrTime(at)
	t.Status.ErasureScheduledAt = ptrTime(at.Add(grace))
	t.Status.ErasureDeadline = ptrTime(at.Add(platformv1.ErasureDeadlineAfterDeactivation))
	for _, s := range done {
		recordStep(t, s, at, "verified")
	}
	return t
}

func TestErasurePlan(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name     string
		tenant   *platformv1.Tenant
		now      time.Time
		want     erasureStep
		wantWait time.Duration
	}{
		{"ingest stops at once", deactivated(t0, 7*day), t0, stepStopIngest, 0},
		{"then waits for the schedule", deactivated(t0, 7*day, stepStopIngest), t0.Add(day), stepDestroyKey, 6 * day},
		{"a second before, still waits", deactivated(t0, 7*day, stepStopIngest), t0.Add(7*day - time.Second), stepDestroyKey, time.Second},
		{"at the schedule, the key goes first", deactivated(t0, 7*day, stepStopIngest), t0.Add(7 * day), stepDestroyKey, 0},
		{"then the worker", deactivated(t0, 7*day, stepStopIngest, stepDestroyKey), t0.Add(7 * day), stepDeleteWorker, 0},
		{"then storage", deactivated(t0, 7*day, stepStopIngest, stepDestroyKey, stepDeleteWorker), t0.Add(8 * day), stepDeleteStorage, 0},
		{"then the namespace", deactivated(t0, 7*day, stepStopIngest, stepDestroyKey, stepDeleteWorker, stepDeleteStorage), t0.Add(8 * day), stepDeleteNamespace, 0},
		{"done only when every step is", deactivated(t0, 0, stepStopIngest, stepDestroyKey, stepDeleteWorker, stepDeleteStorage, stepDeleteNamespace), t0, stepNone, 0},
		{"no storage step before the key is destroyed", deactivated(t0, 0, stepStopIngest, stepDeleteWorker, stepDeleteStorage, stepDeleteNamespace), t0, stepDestroyKey, 0},
		{"a step recorded out of order does not skip an earlier one", deactivated(t0, 0, stepDeleteNamespace), t0, stepStopIngest, 0},
		{"zero grace erases at once", deactivated(t0, 0, stepStopIngest), t0, stepDestroyKey, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, wait := erasurePlan(tc.tenant, tc.now)
			if got != tc.want || wait != tc.wantWait {
				t.Fatalf("erasurePlan() = %q, %v; want %q, %v", got, wait, tc.want, tc.wantWait)
			}
		})
	}
}

func TestErasureAtRiskADayBeforeTheDeadline(t *testing.T) {
	tn := deactivated(t0, 13*24*time.Hour, stepStopIngest)
	deadline := t0.Add(platformv1.ErasureDeadlineAfterDeactivation)
	if erasureAtRisk(tn, deadline.Add(-24*time.Hour-time.Second)) {
		t.Fatal("at risk more than a day before the deadline")
	}
	if !erasureAtRisk(tn, deadline.Add(-24*time.Hour)) {
		t.Fatal("not at risk a day before the deadline")
	}
	if !erasureAtRisk(tn, deadline.Add(time.Hour)) {
		t.Fatal("not at risk past the deadline")
	}
	erased := metav1.NewTime(deadline)
	tn.Status.ErasedAt = &erased
	if erasureAtRisk(tn, deadline.Add(time.Hour)) {
		t.Fatal("an erased tenant is never at risk")
	}
}

func TestNextWakeIsTheEarlierOfScheduleAndAlarm(t *testing.T) {
	day := 24 * time.Hour
	tn := deactivated(t0, 13*day, stepStopIngest)
	// Schedule at 13d, alarm at 13d too: one wake-up.
	if got := nextWake(tn, t0, 13*day); got != 13*day {
		t.Fatalf("nextWake = %v, want 13d", got)
	}
	// A stuck erasure (no schedule wait) still wakes for the alarm.
	if got := nextWake(tn, t0.Add(12*day), 0); got != day {
		t.Fatalf("nextWake = %v, want the alarm in 1d", got)
	}
}

func TestReactivationAllowedOnlyBeforeErasureStarts(t *testing.T) {
	day := 24 * time.Hour
	tn := deactivated(t0, 3*day, stepStopIngest)
	if erasureStarted(tn, t0.Add(3*day-time.Second)) {
		t.Fatal("erasure reported started before its schedule")
	}
	if !erasureStarted(tn, t0.Add(3*day)) {
		t.Fatal("erasure not reported started at its schedule")
	}
	// A destructive step on record means started, whatever the clock says.
	tn = deactivated(t0, 3*day, stepStopIngest, stepDeleteWorker)
	if !erasureStarted(tn, t0) {
		t.Fatal("a recorded destructive step must block reactivation")
	}
	// A destroyed key above all: nothing stored could be read again.
	tn = deactivated(t0, 3*day, stepStopIngest, stepDestroyKey)
	if !erasureStarted(tn, t0) {
		t.Fatal("a destroyed key must block reactivation")
	}
}

// FuzzErasurePlan: whatever the status holds, the planner never panics and
// never reports done while a step is unrecorded.
func FuzzErasurePlan(f *testing.F) {
	f.Add(int64(0), int64(7*24*3600), int64(3600), uint8(0b0001))
	f.Add(int64(-5), int64(0), int64(-3600), uint8(0b1111))
	f.Add(int64(1<<40), int64(13*24*3600), int64(1<<41), uint8(0b1010))
	f.Fuzz(func(t *testing.T, at, grace, since int64, done uint8) {
		start := time.Unix(at%(1<<35), 0).UTC()
		var steps []erasureStep
		for i, s := range erasureSteps {
			if done&(1<<i) != 0 {
				steps = append(steps, s)
			}
		}
		tn := deactivated(start, time.Duration(grace%(1<<40))*time.Second, steps...)
		got, wait := erasurePlan(tn, start.Add(time.Duration(since%(1<<40))*time.Second))
		if wait < 0 {
			t.Fatalf("negative wait %v", wait)
		}
		if got == stepNone && len(steps) != len(erasureSteps) {
			t.Fatalf("done with only %v recorded", steps)
		}
		if got != stepNone && stepDone(tn, got) {
			t.Fatalf("planned %q, which is already done", got)
		}
	})
}

// The schedule and status.gracePeriod always agree. Until erasure starts the
// schedule follows the spec (deactivatedAt + the grace period in force now);
// once it has started, nothing moves.
func TestScheduleFollowsTheGracePeriodUntilErasureStarts(t *testing.T) {
	day := 24 * time.Hour
	withGrace := func(tn *platformv1.Tenant, grace time.Duration) *platformv1.Tenant {
		tn.Spec.Erasure.GracePeriod = &metav1.Duration{Duration: grace}
		return tn
	}
	tests := []struct {
		name      string
		tenant    *platformv1.Tenant
		now       time.Time
		wantAt    time.Time // zero: no schedule
		wantGrace time.Duration
		wantMoved bool
	}{
		{"active: the spec's value, no schedule", withGrace(&platformv1.Tenant{}, 3*day), t0, time.Time{}, 3 * day, false},
		{"active without a value: the default", &platformv1.Tenant{}, t0, time.Time{}, platformv1.DefaultGracePeriod, false},
		{"deactivated, unchanged", withGrace(deactivated(t0, 7*day, stepStopIngest), 7*day), t0.Add(day), t0.Add(7 * day), 7 * day, false},
		{"shortened before the schedule: erases sooner", withGrace(deactivated(t0, 7*day, stepStopIngest), 2*day), t0.Add(day), t0.Add(2 * day), 2 * day, true},
		{"shortened below the time elapsed: erases now", withGrace(deactivated(t0, 7*day, stepStopIngest), 0), t0.Add(day), t0, 0, true},
		{"lengthened before the schedule: erases later", withGrace(deactivated(t0, 2*day, stepStopIngest), 10*day), t0.Add(day), t0.Add(10 * day), 10 * day, true},
		{"lengthened once the schedule has come: nothing moves", withGrace(deactivated(t0, 2*day, stepStopIngest), 10*day), t0.Add(2 * day), t0.Add(2 * day), 2 * day, false},
		{"changed after a destructive step: nothing moves", withGrace(deactivated(t0, 0, stepStopIngest, stepDeleteWorker), 5*day), t0, t0, 0, false},
		{"unset after deactivation: the default", deactivated(t0, day, stepStopIngest), t0.Add(time.Hour), t0.Add(platformv1.DefaultGracePeriod), platformv1.DefaultGracePeriod, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			moved := syncSchedule(tc.tenant, tc.now)
			st := tc.tenant.Status
			if moved != tc.wantMoved {
				t.Errorf("moved = %v, want %v", moved, tc.wantMoved)
			}
			if st.GracePeriod == nil || st.GracePeriod.Duration != tc.wantGrace {
				t.Errorf("status.gracePeriod = %v, want %v", st.GracePeriod, tc.wantGrace)
			}
			switch {
			case tc.wantAt.IsZero() && st.ErasureScheduledAt != nil:
				t.Errorf("scheduled at %v, want no schedule", st.ErasureScheduledAt)
			case !tc.wantAt.IsZero() && (st.ErasureScheduledAt == nil || !st.ErasureScheduledAt.Time.Equal(tc.wantAt)):
				t.Errorf("scheduled at %v, want %v", st.ErasureScheduledAt, tc.wantAt)
			}
			if st.DeactivatedAt != nil && st.ErasureScheduledAt.Sub(st.DeactivatedAt.Time) != st.GracePeriod.Duration {
				t.Errorf("schedule %v and gracePeriod %v disagree", st.ErasureScheduledAt, st.GracePeriod)
			}
		})
	}
}
