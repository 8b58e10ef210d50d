package clusterchannels

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// Only the operator's current Ready=True verdict lets a channel be served.
func TestRefusal(t *testing.T) {
	t.Parallel()
	cond := func(st metav1.ConditionStatus, reason string, gen int64) []metav1.Condition {
		return []metav1.Condition{{Type: platformv1.ConditionReady, Status: st, Reason: reason, ObservedGeneration: gen}}
	}
	now := metav1.Now()
	tests := []struct {
		name       string
		conds      []metav1.Condition
		deleting   bool
		wantReason string
	}{
		{"no verdict yet", nil, false, reasonNotReady},
		{"other conditions only", []metav1.Condition{{Type: "Other", Status: metav1.ConditionTrue}}, false, reasonNotReady},
		{"refused for a conflict", cond(metav1.ConditionFalse, platformv1.ReasonConflict, 3), false, platformv1.ReasonConflict},
		{"refused, tenant deactivated", cond(metav1.ConditionFalse, platformv1.ReasonTenantDeactivated, 3), false, platformv1.ReasonTenantDeactivated},
		{"unknown without a reason", cond(metav1.ConditionUnknown, "", 3), false, reasonNotReady},
		{"ready for an older spec", cond(metav1.ConditionTrue, platformv1.ReasonChannelAccepted, 2), false, reasonStale},
		{"ready but being deleted", cond(metav1.ConditionTrue, platformv1.ReasonChannelAccepted, 3), true, reasonDeleting},
		{"ready for this spec", cond(metav1.ConditionTrue, platformv1.ReasonChannelAccepted, 3), false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mc := &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Name: "wa", Generation: 3}}
			mc.Status.Conditions = tc.conds
			if tc.deleting {
				mc.DeletionTimestamp = &now
			}
			if got := refusal(mc); got != tc.wantReason {
				t.Fatalf("refusal() = %q, want %q", got, tc.wantReason)
			}
		})
	}
}
