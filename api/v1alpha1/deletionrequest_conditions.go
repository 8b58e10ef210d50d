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

// SubjectSecretType is the type of a Secret that holds the identifier of a
// DeletionRequest's subject. The worker may read, and the operator deletes,
// only Secrets of this type that no other object of the platform references:
// a Secret's type cannot change once it is created, so a channel's
// credentials, a TLS certificate or database credentials can never become a
// subject Secret.
const SubjectSecretType = "platform.omniflowcrm.com/subject"

// DeletionRequest condition types and reasons beyond the shared ones.
const (
	// ConditionSubjectErased is the worker's report: True once the subject's
	// data is erased and the ledger written, False with the reason it could
	// not be. The worker writes no other condition; the operator sums it up in
	// Ready.
	ConditionSubjectErased = "SubjectErased"

	// ReasonFailed: the worker could not erase the subject's data.
	ReasonFailed = "Failed"
	// ReasonSubjectSecretMissing: the subject Secret, or its key, does not
	// exist (yet).
	ReasonSubjectSecretMissing = "SubjectSecretMissing"
	// ReasonNotASubjectSecret: the named Secret is not of SubjectSecretType.
	ReasonNotASubjectSecret = "NotASubjectSecret"
	// ReasonSubjectSecretInUse: the named Secret is used by the platform
	// (a channel's credentials, TLS, database credentials, the subject key) or
	// belongs to another DeletionRequest.
	ReasonSubjectSecretInUse = "SubjectSecretInUse"
	// ReasonUnknownChannel: spec.channel names no MetaChannel of the tenant,
	// or one of another platform.
	ReasonUnknownChannel = "UnknownChannel"
	// ReasonNotATenantNamespace: the request is outside a tenant's namespace.
	ReasonNotATenantNamespace = "NotATenantNamespace"
)

// SubjectSecretGrace is how long after it is received a request may wait for
// its subject Secret (Meta's callback creates the Secret right after the
// request; a manifest may list them in any order) before it is refused.
const SubjectSecretGrace = time.Minute
