package v1alpha1

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TenantState says whether a business is active.
// +kubebuilder:validation:Enum=Active;Deactivated
type TenantState string

const (
	// TenantActive: the tenant's channels are served and its data is kept.
	TenantActive TenantState = "Active"
	// TenantDeactivated: ingest stops at once and all data is erased after the
	// grace period, within 14 days at most.
	TenantDeactivated TenantState = "Deactivated"
)

// StorageBackend selects where a tenant's data lives.
// +kubebuilder:validation:Enum=SQLite;PostgreSQL
type StorageBackend string

const (
	// StorageSQLite: an embedded SQLite database on a PersistentVolumeClaim.
	StorageSQLite StorageBackend = "SQLite"
	// StoragePostgreSQL: a database and a role on a shared PostgreSQL server.
	StoragePostgreSQL StorageBackend = "PostgreSQL"
)

// TenantPhase is a one-word summary of where a Tenant is in its life.
// +kubebuilder:validation:Enum=Provisioning;Active;Deactivated;Erasing;Erased;Failed
type TenantPhase string

const (
	TenantPhaseProvisioning TenantPhase = "Provisioning"
	TenantPhaseActive       TenantPhase = "Active"
	TenantPhaseDeactivated  TenantPhase = "Deactivated"
	TenantPhaseErasing      TenantPhase = "Erasing"
	TenantPhaseErased       TenantPhase = "Erased"
	TenantPhaseFailed       TenantPhase = "Failed"
)

// ErasureDeadlineAfterDeactivation is the promise: all of a tenant's data is
// gone this long after deactivation at the latest.
const ErasureDeadlineAfterDeactivation = 14 * 24 * time.Hour

// DefaultGracePeriod is the grace period when spec.erasure.gracePeriod is unset.
const DefaultGracePeriod = 7 * 24 * time.Hour

// MaxGracePeriod keeps a day of margin before the 14-day deadline.
const MaxGracePeriod = 13 * 24 * time.Hour

// EffectiveGracePeriod is the grace period in force for the tenant.
func (t *Tenant) EffectiveGracePeriod() time.Duration {
	if g := t.Spec.Erasure.GracePeriod; g != nil && g.Duration >= 0 && g.Duration <= MaxGracePeriod {
		return g.Duration
	}
	return DefaultGracePeriod
}

// NamespaceName is the namespace that holds the tenant's objects.
func (t *Tenant) NamespaceName() string {
	if t.Spec.Namespace != "" {
		return t.Spec.Namespace
	}
	return "tenant-" + t.Name
}

// TenantSpec is what the platform team declares about one business.
// +kubebuilder:validation:XValidation:rule="!has(self.worker) || !has(self.worker.replicas) || self.worker.replicas <= 1 || (has(self.storage) && has(self.storage.backend) && self.storage.backend == 'PostgreSQL')",message="worker.replicas above 1 needs storage.backend PostgreSQL: SQLite has a single writer"
// +kubebuilder:validation:XValidation:rule="(has(oldSelf.storage) && has(oldSelf.storage.backend) ? oldSelf.storage.backend : 'SQLite') == (has(self.storage) && has(self.storage.backend) ? self.storage.backend : 'SQLite')",message="storage.backend is immutable: switching would abandon the stored data"
// +kubebuilder:validation:XValidation:rule="has(self.__namespace__) == has(oldSelf.__namespace__) && (!has(self.__namespace__) || self.__namespace__ == oldSelf.__namespace__)",message="namespace is immutable"
type TenantSpec struct {
	// displayName is a human-readable name of the business, for people only:
	// shown by `kubectl get tn -o wide` (column Display-Name); no behaviour
	// depends on it. It must not hold personal data.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	DisplayName string `json:"displayName,omitempty"`

	// state is Active while the business has a subscription. Setting it to
	// Deactivated stops ingest at once and erases all of the tenant's data
	// after erasure.gracePeriod, within 14 days at most. An Erased tenant
	// cannot be reactivated.
	// +optional
	// +kubebuilder:default=Active
	State TenantState `json:"state,omitempty"`

	// namespace is the namespace that holds the tenant's worker, storage,
	// channels and deletion requests. Defaults to tenant-<name>. An existing
	// namespace is adopted only if it carries the label
	// platform.omniflowcrm.com/tenant=<name>. Immutable.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace,omitempty"`

	// storage configures where the tenant's data is kept.
	// +optional
	Storage TenantStorage `json:"storage,omitempty"`

	// erasure configures how data is erased after deactivation.
	// +optional
	Erasure ErasurePolicy `json:"erasure,omitempty"`

	// worker configures the tenant's ingest worker, which receives Meta's
	// webhooks.
	// +optional
	Worker WorkerSpec `json:"worker,omitempty"`

	// retention, when set, deletes messages older than a maximum age while
	// the tenant is active.
	// +optional
	Retention *RetentionPolicy `json:"retention,omitempty"`

	// encryption configures the tenant's data key: the key, held outside the
	// tenant's store and destroyed first on erasure, that puts every copy of
	// the store (snapshots, backups) beyond use.
	// +optional
	Encryption EncryptionPolicy `json:"encryption,omitempty"`
}

// EncryptionPolicy configures a tenant's data key.
type EncryptionPolicy struct {
	// rotationToken asks for a key rotation: each new value (a date, a ticket
	// number) makes the operator add one new version to the tenant's data key
	// and make it the version new records are sealed with. Older versions
	// stay in the key, so records sealed under them remain readable. The
	// value last honoured is status.encryption.rotationToken; a value set
	// before the key exists is honoured by creating it. Empty: no rotation.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-._A-Za-z0-9]*[A-Za-z0-9])?$`
	RotationToken string `json:"rotationToken,omitempty"`
}

// TenantStorage configures a tenant's store.
type TenantStorage struct {
	// backend is SQLite (an embedded database on a PersistentVolumeClaim, one
	// worker replica) or PostgreSQL (a database on a shared server, several
	// replicas). Immutable: switching would abandon the stored data.
	// Defaults to SQLite.
	// +optional
	Backend StorageBackend `json:"backend,omitempty"`

	// size is the requested capacity of the SQLite volume. It can grow, not
	// shrink, where the storage class allows expansion. Defaults to 5Gi.
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`

	// storageClassName is the StorageClass of the SQLite volume. Defaults to
	// the operator's --default-storage-class, else the cluster default.
	// Immutable once the volume exists.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// ErasurePolicy configures erasure after deactivation.
type ErasurePolicy struct {
	// gracePeriod is how long after deactivation the data is erased, as a
	// Go duration ("168h" is 7 days). At most 312h (13 days), so that erasure
	// finishes with a day of margin before the 14-day promise. During the
	// grace period nothing is ingested and the tenant can be reactivated.
	// Defaults to 168h; the value in force is shown in status.gracePeriod.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('312h')",message="erasure.gracePeriod must be at most 312h (13 days) so that erasure completes within 14 days of deactivation"
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`
}

// WorkerSpec configures the tenant's ingest worker Deployment.
type WorkerSpec struct {
	// replicas is the number of worker pods. More than 1 needs the
	// PostgreSQL backend. Defaults to 1.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=20
	Replicas *int32 `json:"replicas,omitempty"`

	// resources are the worker container's compute requests and limits.
	// Defaults to requests of 50m CPU and 64Mi memory and a 256Mi memory limit.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// image overrides the operator's --worker-image for this tenant.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`
}

// RetentionPolicy deletes old messages while a tenant is active.
type RetentionPolicy struct {
	// messagesMaxAge is the age, as a Go duration ("8760h" is a year), after
	// which stored messages are deleted, by their own timestamps, with their
	// reactions, delivery statuses and files; contacts go with their last
	// message. The tenant's worker deletes them at start and then hourly, so a
	// message is gone at most messagesMaxAge plus one hour after it was sent.
	// status.retention shows the policy in force and the last run.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('24h')",message="retention.messagesMaxAge must be at least 24h"
	MessagesMaxAge metav1.Duration `json:"messagesMaxAge"`
}

// TenantStatus is what the operator observed and did.
type TenantStatus struct {
	// observedGeneration is the generation of the spec that this status
	// describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase summarises the tenant's life: Provisioning, Active, Deactivated
	// (grace period running), Erasing, Erased or Failed.
	// +optional
	Phase TenantPhase `json:"phase,omitempty"`

	// conditions are the detailed state: Ready, NamespaceReady, StorageReady,
	// WorkerReady, RouteReady, Erasing, Erased, ErasureAtRisk, and the kstatus
	// pair Reconciling (True while the operator works towards the spec) and
	// Stalled (True when only a human can help). Ready is True for an Active
	// tenant provisioned, a Deactivated one waiting out its grace period and
	// an Erased one.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// namespace is the namespace that holds the tenant's objects.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`

	// gracePeriod is the erasure grace period in force (the spec's value or
	// its default).
	// +optional
	// +kubebuilder:validation:Type=string
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`

	// storage records the storage the operator created for this tenant; only
	// what is recorded here is ever destroyed by the operator.
	// +optional
	Storage *StorageStatus `json:"storage,omitempty"`

	// deactivatedAt is when the operator first saw the tenant deactivated.
	// +optional
	DeactivatedAt *metav1.Time `json:"deactivatedAt,omitempty"`

	// erasureScheduledAt is deactivatedAt plus the grace period: when erasure
	// starts.
	// +optional
	ErasureScheduledAt *metav1.Time `json:"erasureScheduledAt,omitempty"`

	// erasureDeadline is deactivatedAt plus 14 days: the latest time by which
	// all data must be gone.
	// +optional
	ErasureDeadline *metav1.Time `json:"erasureDeadline,omitempty"`

	// erasedAt is when erasure was complete and verified.
	// +optional
	ErasedAt *metav1.Time `json:"erasedAt,omitempty"`

	// erasure is the audit record of the erasure: each step, when it
	// completed and how it was verified. It holds no personal data.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Erasure []ErasureStep `json:"erasure,omitempty"`

	// retention is the retention policy in force (spec.retention) and when the
	// worker last applied it. Absent when spec.retention is unset.
	// +optional
	Retention *RetentionStatus `json:"retention,omitempty"`

	// files are the tenant's shared files (media) as the worker last reported
	// them: the fetch queue and what is stored. Absent until the worker has
	// reported. Kept, as last reported, while the tenant is deactivated (the
	// worker is stopped), and cleared once its storage is erased.
	// +optional
	Files *FilesStatus `json:"files,omitempty"`

	// encryption describes the tenant's data key (never its value). Absent
	// when the operator runs without a namespace of its own (no data keys)
	// and once erasure has destroyed the key.
	// +optional
	Encryption *EncryptionStatus `json:"encryption,omitempty"`
}

// FilesStatus counts a tenant's shared files as its worker reported them. It
// holds counts and times only, never file names, ids or bytes.
type FilesStatus struct {
	// reportedAt is when the worker wrote the report these counts come from.
	// +optional
	ReportedAt *metav1.Time `json:"reportedAt,omitempty"`

	// pending is the number of files waiting to be fetched (queued, or being
	// retried after a transient failure, or paused by a refused token).
	// +optional
	Pending int64 `json:"pending"`

	// oldestPendingAt is when the oldest pending file was received; absent
	// when none is pending. An alert fires when it is over an hour old.
	// +optional
	OldestPendingAt *metav1.Time `json:"oldestPendingAt,omitempty"`

	// fetched is the number of file records whose bytes are stored.
	// +optional
	Fetched int64 `json:"fetched"`

	// failed is the number of files whose fetch failed for good (not found,
	// expired at Meta, too large, wrong checksum, out of attempts).
	// +optional
	Failed int64 `json:"failed"`

	// metadataOnly is the number of file records kept without bytes by design:
	// WhatsApp media of a channel without accessTokenRef, Instagram story
	// mentions.
	// +optional
	MetadataOnly int64 `json:"metadataOnly"`

	// storedContents is the number of distinct contents stored: two files with
	// the same bytes are stored once.
	// +optional
	StoredContents int64 `json:"storedContents"`

	// storedBytes is the size of the distinct contents stored, in bytes.
	// +optional
	StoredBytes int64 `json:"storedBytes"`
}

// EncryptionStatus describes a tenant's data key.
type EncryptionStatus struct {
	// keySecret is the Secret, as namespace/name, that holds the tenant's
	// data key: in the operator's namespace, readable by the tenant's worker
	// and by nobody in the tenant's namespace.
	// +optional
	// +kubebuilder:validation:MaxLength=317
	KeySecret string `json:"keySecret,omitempty"`

	// keyVersion is the version of the data key new records are sealed with.
	// +optional
	KeyVersion int32 `json:"keyVersion,omitempty"`

	// rotationToken is the spec.encryption.rotationToken last honoured.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	RotationToken string `json:"rotationToken,omitempty"`

	// sealedVersion is the key version every record of the tenant's store is
	// sealed under, as the worker last reported it: the version its last
	// complete encryption pass brought the store to. Absent (0) until a pass
	// completed: a store that held data before encryption was turned on, or
	// one whose pass after a rotation is still under way, holds records in
	// clear or under an older version meanwhile.
	// +optional
	// +kubebuilder:validation:Minimum=0
	SealedVersion int32 `json:"sealedVersion,omitempty"`

	// fullyEncrypted is true when every stored record is sealed under the key
	// version new records are sealed with (sealedVersion equals keyVersion).
	// False while the worker's background pass encrypts data stored before
	// encryption, or re-seals records after a rotation: the tenant is Ready
	// meanwhile, since the pass runs alongside ingest.
	// +optional
	FullyEncrypted bool `json:"fullyEncrypted,omitempty"`
}

// StorageStatus records the storage created for a tenant.
type StorageStatus struct {
	// backend is the storage backend in use.
	// +optional
	Backend StorageBackend `json:"backend,omitempty"`

	// claimName is the PersistentVolumeClaim holding the SQLite database.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClaimName string `json:"claimName,omitempty"`

	// volumeName is the PersistentVolume bound to the claim, once bound.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	VolumeName string `json:"volumeName,omitempty"`

	// databaseName is the PostgreSQL database of the tenant.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	DatabaseName string `json:"databaseName,omitempty"`
}

// ErasureStep is one verified step of a tenant's erasure.
type ErasureStep struct {
	// name identifies the step, for example StopIngest, DestroyKey,
	// DeleteWorker, DeleteStorage, DeleteNamespace.
	// +required
	// +kubebuilder:validation:MaxLength=64
	Name string `json:"name"`

	// completedAt is when the step was verified complete.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`

	// verification says how completion was checked, for example "GET
	// persistentvolumeclaims/data returned NotFound".
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Verification string `json:"verification,omitempty"`

	// files is the number of shared files whose bytes this step erased, as the
	// worker last reported them before it was stopped (status.files.fetched).
	// Set on the step that destroys the tenant's store (DeleteStorage); absent
	// on the other steps, and when the worker never reported.
	// +optional
	Files *int64 `json:"files,omitempty"`

	// fileBytes is the size in bytes of the shared-file contents this step
	// erased, as the worker last reported them (status.files.storedBytes).
	// Set with files.
	// +optional
	FileBytes *int64 `json:"fileBytes,omitempty"`
}

// Tenant is one business using Omniflow. It owns a namespace with the
// business's ingest worker, storage, channels and deletion requests; when it
// is deactivated all of its data is erased within 14 days.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS label (lower-case letters, digits and '-'): it names the tenant's namespace"
// +kubebuilder:validation:XValidation:rule="has(self.spec.__namespace__) || size(self.metadata.name) <= 56",message="metadata.name must be at most 56 characters unless spec.namespace is set, so that the namespace tenant-<name> fits in 63"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.status) || !has(oldSelf.status.erasedAt) || oldSelf.spec.state == self.spec.state || self.spec.state == 'Deactivated'",message="an erased tenant cannot be reactivated: its data is gone; create a new Tenant to onboard the business again"
// +kubebuilder:resource:scope=Cluster,shortName=tn,categories=omniflow
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.spec.state`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Namespace",type=string,JSONPath=`.status.namespace`
// +kubebuilder:printcolumn:name="Erasure-Deadline",type=string,JSONPath=`.status.erasureDeadline`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Display-Name",type=string,JSONPath=`.spec.displayName`,priority=1
// +kubebuilder:printcolumn:name="Encrypted",type=boolean,JSONPath=`.status.encryption.fullyEncrypted`,priority=1
type Tenant struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the tenant.
	// +required
	Spec TenantSpec `json:"spec"`

	// status is the observed state of the tenant.
	// +optional
	Status TenantStatus `json:"status,omitempty"`
}

// TenantList is a list of Tenants.
// +kubebuilder:object:root=true
type TenantList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Tenant `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Tenant{}, &TenantList{})
}
