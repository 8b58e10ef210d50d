package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// The worker's report: a ConfigMap in the tenant's namespace, created (empty) and
// owned by the operator, that the worker may patch and nothing else (its Role names
// it alone). The worker writes what it did there, the operator copies it into the
// Tenant's status: the worker needs no access to Tenants. It holds counts and times,
// never personal data.
const (
	// WorkerReportName is the report ConfigMap's name.
	WorkerReportName = "ingest-worker-report"
	// WorkerReportRetentionKey holds the last retention run, a RetentionStatus in JSON.
	WorkerReportRetentionKey = "retention"
	// WorkerReportMediaKey holds the worker's shared-files state (fetch queue, stored
	// bytes, channels whose token was refused), a workerreport.Media in JSON.
	WorkerReportMediaKey = "media"
	// WorkerReportEncryptionKey holds how far the worker's encryption pass brought the
	// tenant's store (active and sealed key versions), a workerreport.Encryption in JSON.
	WorkerReportEncryptionKey = "encryption"
)

// RetentionRunResult is the outcome of one retention run.
// +kubebuilder:validation:Enum=Succeeded;Failed
type RetentionRunResult string

const (
	// RetentionRunSucceeded: everything older than the age was deleted.
	RetentionRunSucceeded RetentionRunResult = "Succeeded"
	// RetentionRunFailed: the run stopped early; it is retried at the next interval.
	RetentionRunFailed RetentionRunResult = "Failed"
)

// RetentionStatus is the retention policy in force and the worker's last run of it.
type RetentionStatus struct {
	// messagesMaxAge is the maximum age in force: spec.retention.messagesMaxAge as
	// passed to the worker.
	// +optional
	// +kubebuilder:validation:Type=string
	MessagesMaxAge *metav1.Duration `json:"messagesMaxAge,omitempty"`

	// interval is how often the worker runs retention. A message is deleted at most
	// messagesMaxAge plus interval after its own timestamp while the worker runs.
	// +optional
	// +kubebuilder:validation:Type=string
	Interval *metav1.Duration `json:"interval,omitempty"`

	// lastRunAt is when the worker's last run under this maximum age started; it
	// deleted what was older than lastRunAt minus messagesMaxAge. Unset until the
	// worker has run with this policy (it runs at start).
	// +optional
	LastRunAt *metav1.Time `json:"lastRunAt,omitempty"`

	// lastRunResult is Succeeded, or Failed when the last run stopped early (it is
	// retried at the next interval; lastRunPruned counts what it deleted before).
	// +optional
	LastRunResult RetentionRunResult `json:"lastRunResult,omitempty"`

	// lastRunPruned counts what the last run deleted, per kind.
	// +optional
	LastRunPruned *RetentionCounts `json:"lastRunPruned,omitempty"`
}

// RetentionCounts are numbers of deleted records per kind.
type RetentionCounts struct {
	// messages deleted, reactions included.
	// +optional
	Messages int64 `json:"messages"`
	// statuses deleted: delivery statuses and read/delivery receipts.
	// +optional
	Statuses int64 `json:"statuses"`
	// files are the file records deleted with their messages.
	// +optional
	Files int64 `json:"files"`
	// fileBytes is the size of those files' stored contents, file by file (a
	// copy another record still shares is counted and kept).
	// +optional
	FileBytes int64 `json:"fileBytes,omitempty"`
	// contacts deleted because no message, status or file of theirs was left.
	// +optional
	Contacts int64 `json:"contacts"`
}
