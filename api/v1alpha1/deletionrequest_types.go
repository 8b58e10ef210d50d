package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeletionScope is one kind of data that a DeletionRequest erases.
// +kubebuilder:validation:Enum=Messages;Contacts;Files
type DeletionScope string

const (
	// ScopeMessages: the subject's messages in both directions and their
	// delivery statuses.
	ScopeMessages DeletionScope = "Messages"
	// ScopeContacts: the subject's contact (lead) records, the identity changes that
	// link their identifiers, and where they came from (referrals, opt-ins and the
	// notification tokens those carry).
	ScopeContacts DeletionScope = "Contacts"
	// ScopeFiles: files the subject sent or received.
	ScopeFiles DeletionScope = "Files"
)

// DeletionSource says who filed a DeletionRequest.
// +kubebuilder:validation:Enum=Manual;MetaCallback
type DeletionSource string

const (
	// SourceManual: filed by the business (the data controller).
	SourceManual DeletionSource = "Manual"
	// SourceMetaCallback: filed by the worker on Meta's data-deletion callback.
	SourceMetaCallback DeletionSource = "MetaCallback"
)

// DeletionPhase is where a DeletionRequest is.
// +kubebuilder:validation:Enum=Pending;Running;Completed;Refused;Failed
type DeletionPhase string

const (
	DeletionPending   DeletionPhase = "Pending"
	DeletionRunning   DeletionPhase = "Running"
	DeletionCompleted DeletionPhase = "Completed"
	DeletionRefused   DeletionPhase = "Refused"
	DeletionFailed    DeletionPhase = "Failed"
)

// DeletionRequestSpec names the end-user whose data is erased. The
// identifier itself lives in a Secret so that it never appears in this
// object, in Events or in audit logs of CR writes.
type DeletionRequestSpec struct {
	// platform is the platform of the subject's identifier: WhatsApp (wa_id or
	// phone number), Messenger (page-scoped id) or Instagram (Instagram-scoped
	// id).
	// +required
	Platform Platform `json:"platform"`

	// subjectSecretRef names the key of a Secret in this namespace that holds
	// the subject's identifier. The Secret must have type
	// platform.omniflowcrm.com/subject and must not be used by anything else of
	// the platform (a channel's credentials, TLS, database credentials, the
	// subject key) nor belong to another request; otherwise the request is
	// Refused and the Secret left alone. The tenant's worker may read it while
	// the request is open; it is deleted once the request is finished.
	// +required
	SubjectSecretRef SecretKeyRef `json:"subjectSecretRef"`

	// channel limits the erasure to one MetaChannel of the tenant. Empty means
	// every channel of the platform. A channel that is not a MetaChannel of
	// this namespace, or is one of another platform, gets the request Refused.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Channel string `json:"channel,omitempty"`

	// scope lists what is erased: Messages (with their delivery statuses),
	// Contacts (with their identity changes and lead records: referrals, opt-ins
	// and notification tokens), Files. Defaults to all three.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=3
	// +kubebuilder:default={Messages,Contacts,Files}
	Scope []DeletionScope `json:"scope,omitempty"`

	// source says who filed the request: Manual (the business) or
	// MetaCallback (Meta's data-deletion callback).
	// +optional
	// +kubebuilder:default=Manual
	Source DeletionSource `json:"source,omitempty"`

	// reason is a free-text note for the audit trail, for example a ticket
	// number. It must not hold personal data.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Reason string `json:"reason,omitempty"`

	// ttlSecondsAfterFinished is how long a finished request is kept before
	// it is deleted, so that requests do not pile up. Defaults to 30 days.
	// The erasure ledger in the tenant's store outlives it.
	// +optional
	// +kubebuilder:default=2592000
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=31622400
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
}

// ErasedCounts counts what a DeletionRequest erased, per kind.
type ErasedCounts struct {
	// messages is the number of messages erased.
	// +optional
	Messages int64 `json:"messages,omitempty"`
	// statuses is the number of delivery statuses erased.
	// +optional
	Statuses int64 `json:"statuses,omitempty"`
	// contacts is the number of contact records, identity changes and lead
	// records erased.
	// +optional
	Contacts int64 `json:"contacts,omitempty"`
	// files is the number of files erased.
	// +optional
	Files int64 `json:"files,omitempty"`
	// fileBytes is the size of the erased files' stored contents, file by file.
	// Two messages carrying the same file share one stored copy: each counts it,
	// and the copy goes with the last record that refers to it.
	// +optional
	FileBytes int64 `json:"fileBytes,omitempty"`
}

// DeletionRequestStatus is the outcome of a DeletionRequest. It holds no
// personal data.
type DeletionRequestStatus struct {
	// observedGeneration is the generation of the spec that this status
	// describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase is Pending, Running, Completed, Refused or Failed.
	// +optional
	Phase DeletionPhase `json:"phase,omitempty"`

	// conditions: Ready (the request is done; written by the operator, its
	// reason says why a request was refused), AtRisk (unfinished 3 days before
	// its deadline), SubjectErased (the worker's report of the erasure),
	// Reconciling (True while Pending or Running) and Stalled (True when
	// Refused, Failed or at risk: a human must act).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// receivedAt is when the operator first saw the request.
	// +optional
	ReceivedAt *metav1.Time `json:"receivedAt,omitempty"`

	// deadline is receivedAt plus 30 days (GDPR Art. 12(3)).
	// +optional
	Deadline *metav1.Time `json:"deadline,omitempty"`

	// completedAt is when the request finished: the erasure was committed
	// (Completed), or it was refused or failed. The TTL counts from it.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`

	// erased counts what was erased, per kind.
	// +optional
	Erased *ErasedCounts `json:"erased,omitempty"`

	// subjectRef is a keyed hash (HMAC-SHA256 with a per-tenant key) of the
	// subject's identifier: it lets an auditor match requests for the same
	// person without revealing who it is.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	SubjectRef string `json:"subjectRef,omitempty"`

	// confirmationCode is a random code given to the requester (and to Meta)
	// to look the request up.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ConfirmationCode string `json:"confirmationCode,omitempty"`
}

// DeletionRequest asks for one end-user's data to be erased from one tenant.
// Its spec cannot change once created.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=odr,categories=omniflow
// +kubebuilder:printcolumn:name="Platform",type=string,JSONPath=`.spec.platform`
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.source`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Deadline",type=string,JSONPath=`.status.deadline`
// +kubebuilder:printcolumn:name="Completed",type=date,JSONPath=`.status.completedAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DeletionRequest struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec names the subject and the scope of the erasure. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: file a new DeletionRequest instead"
	Spec DeletionRequestSpec `json:"spec"`

	// status is the outcome of the request.
	// +optional
	Status DeletionRequestStatus `json:"status,omitempty"`
}

// DeletionRequestList is a list of DeletionRequests.
// +kubebuilder:object:root=true
type DeletionRequestList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DeletionRequest `json:"items"`
}

func init() {
	SchemeBuilder.Register(&DeletionRequest{}, &DeletionRequestList{})
}
