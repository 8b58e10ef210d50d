package v1alpha1

// Condition types. Positive polarity: True is the healthy state.
const (
	// ConditionReady: the object is in the state its spec asks for (an
	// Active tenant provisioned, a Deactivated one with ingest stopped and
	// its erasure scheduled, an Erased one erased). kstatus reads it as
	// Current; Reconciling and Stalled below say why it is not.
	ConditionReady = "Ready"
	// ConditionNamespaceReady: the tenant's namespace exists and is ours.
	ConditionNamespaceReady = "NamespaceReady"
	// ConditionStorageReady: the tenant's store is provisioned.
	ConditionStorageReady = "StorageReady"
	// ConditionWorkerReady: the ingest worker Deployment is available.
	ConditionWorkerReady = "WorkerReady"
	// ConditionRouteReady: Meta's webhooks can reach the worker.
	ConditionRouteReady = "RouteReady"
	// ConditionErasing: erasure is scheduled or in progress; the message names
	// what is still pending.
	ConditionErasing = "Erasing"
	// ConditionErased: all of the tenant's data is erased and verified.
	ConditionErased = "Erased"
	// ConditionErasureAtRisk: erasure is not complete 24h before its deadline.
	ConditionErasureAtRisk = "ErasureAtRisk"
)

// Condition reasons.
const (
	ReasonReconciled            = "Reconciled"
	ReasonProgressing           = "Progressing"
	ReasonNamespaceConflict     = "NamespaceConflict"
	ReasonNamespaceTerminating  = "NamespaceTerminating"
	ReasonApplyFailed           = "ApplyFailed"
	ReasonStorageUnsupported    = "StorageUnsupported"
	ReasonClaimPending          = "ClaimPending"
	ReasonClaimBound            = "ClaimBound"
	ReasonDeploymentAvailable   = "DeploymentAvailable"
	ReasonDeploymentUnavailable = "DeploymentUnavailable"
	ReasonDeactivated           = "Deactivated"
	ReasonNotServed             = "NotServed"
	ReasonSecretMissing         = "SecretMissing"
	ReasonConflict              = "Conflict"
	ReasonRefused               = "Refused"
	// ReasonReactivationRefused: spec.state is Active again but the erasure
	// has started or is done; a new Tenant must be created instead.
	ReasonReactivationRefused = "ReactivationRefused"
	// ReasonDatabaseReady: the tenant's PostgreSQL role and database exist
	// and its credentials are in the Secret PostgresSecretName.
	ReasonDatabaseReady = "DatabaseReady"
	// ReasonDatabaseUnavailable: the shared PostgreSQL server, or the admin
	// Secret that names it, cannot be used right now; the operator retries.
	ReasonDatabaseUnavailable = "DatabaseUnavailable"
	// ReasonDatabaseConflict: a database or role of the tenant's name exists
	// on the shared server and is bound to another Tenant (its comment names
	// another UID); it is neither adopted nor changed.
	ReasonDatabaseConflict = "DatabaseConflict"
	// ReasonDataKeyMissing: the tenant's data key Secret was provisioned
	// (status.encryption names it) and is gone. It is not made again: a new
	// key could not read what the lost one sealed. Restore the Secret from a
	// backup of the operator's namespace.
	ReasonDataKeyMissing = "DataKeyMissing"
)

// Finalizers.
const (
	// TenantFinalizer keeps a Tenant until all of its data is erased and the
	// erasure is recorded.
	TenantFinalizer = "platform.omniflowcrm.com/erasure"
)

// Labels carried by everything the operator creates.
const (
	// LabelTenant names the Tenant an object belongs to. A namespace is adopted
	// only when it already carries this label with the Tenant's name.
	LabelTenant = "platform.omniflowcrm.com/tenant"
	// LabelManagedBy is the standard managed-by label.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on our objects.
	ManagedByValue = "omniflow-operator"
)

// The per-tenant key of the keyed hash (HMAC-SHA256) that names an erased
// subject in DeletionRequest status and in the erasure ledger. The operator
// creates it once in each tenant namespace; the worker reads it.
const (
	SubjectKeySecretName = "omniflow-subject-key"
	SubjectKeySecretKey  = "key"
)

// The Secret in a PostgreSQL tenant's namespace that holds the DSN of the
// tenant's own database and role. The operator creates it before the role,
// so that the password it sets is never lost; the worker reads it from its
// environment.
const (
	PostgresSecretName = "omniflow-postgres"
	PostgresSecretKey  = "dsn"
)

// The kstatus conditions (sigs.k8s.io/cli-utils/pkg/kstatus), abnormal-true:
// Flux, Argo CD (with the health check in docs/gitops.md) and `kubectl wait`
// read them beside Ready. Exactly one of Ready, Reconciling and Stalled is
// True once the operator has looked at an object (health.go says which).
const (
	// ConditionReconciling: the operator is still working towards the
	// state the spec asks for; it gets there without help.
	ConditionReconciling = "Reconciling"
	// ConditionStalled: the object cannot reach the state its spec asks for
	// without a human (a conflict, a missing Secret, a refused request, a
	// legal deadline at risk).
	ConditionStalled = "Stalled"
)
