package v1alpha1

import "time"

// DeletionRequest condition types and reasons.
const (
	// ConditionAtRisk: the request is unfinished 3 days before its deadline.
	ConditionAtRisk = "AtRisk"

	// ReasonPending: waiting for the tenant's worker to erase the data.
	ReasonPending = "Pending"
	// ReasonCompleted: the subject's data is erased and the ledger written.
	ReasonCompleted = "Completed"
	// ReasonDeadlineNear: less than 3 days to the deadline.
	ReasonDeadlineNear = "DeadlineNear"
	// ReasonOnSchedule: the deadline is more than 3 days away.
	ReasonOnSchedule = "OnSchedule"
)

// DeletionDeadline is the time the controller has to answer a request
// (GDPR Art. 12(3): one month).
const DeletionDeadline = 30 * 24 * time.Hour

// DeletionAtRiskBefore is how long before its deadline an unfinished request
// raises the alarm.
const DeletionAtRiskBefore = 3 * 24 * time.Hour

// Finished reports whether the request reached a final phase.
func (d *DeletionRequest) Finished() bool {
	switch d.Status.Phase {
	case DeletionCompleted, DeletionRefused, DeletionFailed:
		return true
	}
	return false
}
