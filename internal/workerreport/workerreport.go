// Package workerreport is how the worker tells the operator what it did without any
// access to Tenants: it merge-patches the report ConfigMap the operator created for it
// in the tenant's namespace (the only ConfigMap its Role lets it patch), and the
// operator copies the report into the Tenant's status. Reports hold counts and times,
// never personal data.
package workerreport

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/retention"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Retention publishes retention runs (a retention.Reporter).
type Retention struct {
	// Client acts as the worker's ServiceAccount.
	Client    client.Client
	Namespace string
}

var _ retention.Reporter = (*Retention)(nil)

// Report writes the run into the report ConfigMap's retention key.
func (r *Retention) Report(ctx context.Context, rep retention.Report) error {
	return patchKey(ctx, r.Client, r.Namespace, platformv1.WorkerReportRetentionKey, RetentionStatus(rep))
}

// MediaReporter publishes the fetcher's media report (a mediafetch.Reporter).
type MediaReporter struct {
	// Client acts as the worker's ServiceAccount.
	Client    client.Client
	Namespace string
}

// Report writes m into the report ConfigMap's media key.
func (r *MediaReporter) Report(ctx context.Context, m Media) error {
	return patchKey(ctx, r.Client, r.Namespace, platformv1.WorkerReportMediaKey, m)
}

// EncryptionReporter publishes the encryption pass's state (a reseal.Reporter).
type EncryptionReporter struct {
	// Client acts as the worker's ServiceAccount.
	Client    client.Client
	Namespace string
	// Now stamps the report; nil means time.Now.
	Now func() time.Time
}

// Report writes s into the report ConfigMap's encryption key.
func (r *EncryptionReporter) Report(ctx context.Context, s store.EncryptionState) error {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	return patchKey(ctx, r.Client, r.Namespace, platformv1.WorkerReportEncryptionKey, EncryptionOf(s, now()))
}

// Encryption is how far the tenant's store is encrypted, as the worker reports it under
// platformv1.WorkerReportEncryptionKey: key versions only, never key material. The
// operator copies it into the Tenant's status.encryption.
type Encryption struct {
	ReportedAt metav1.Time `json:"reportedAt"`
	// ActiveVersion is the key version new records are sealed under; 0 when the
	// store does not encrypt.
	ActiveVersion int64 `json:"activeVersion"`
	// SealedVersion is the version every stored record was brought to by the last
	// complete pass; 0 until a pass completed.
	SealedVersion int64 `json:"sealedVersion"`
	// FullyEncrypted: every record is sealed under the active version.
	FullyEncrypted bool `json:"fullyEncrypted"`
}

// EncryptionOf is the report of a store's state at now.
func EncryptionOf(s store.EncryptionState, now time.Time) Encryption {
	return Encryption{
		ReportedAt:    metav1.NewTime(now),
		ActiveVersion: int64(s.ActiveVersion), SealedVersion: int64(s.SealedVersion), FullyEncrypted: s.FullyEncrypted(),
	}
}

// patchKey writes doc, as JSON, under one key of the report ConfigMap.
func patchKey(ctx context.Context, c client.Client, namespace, key string, doc any) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("encode %s report: %w", key, err)
	}
	patch, err := json.Marshal(map[string]any{"data": map[string]string{key: string(b)}})
	if err != nil {
		return fmt.Errorf("encode %s report: %w", key, err)
	}
	// A merge patch needs no read first: patch on that one object is all the Role grants.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: platformv1.WorkerReportName}}
	if err := c.Patch(ctx, cm, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("patch configmap %s/%s: %w", namespace, platformv1.WorkerReportName, err)
	}
	return nil
}

// RetentionStatus is a run as the Tenant's status shows it.
func RetentionStatus(rep retention.Report) platformv1.RetentionStatus {
	result := platformv1.RetentionRunSucceeded
	if rep.Err != nil {
		result = platformv1.RetentionRunFailed
	}
	return platformv1.RetentionStatus{
		MessagesMaxAge: &metav1.Duration{Duration: rep.MaxAge},
		Interval:       &metav1.Duration{Duration: rep.Interval},
		LastRunAt:      &metav1.Time{Time: rep.StartedAt},
		LastRunResult:  result,
		LastRunPruned: &platformv1.RetentionCounts{
			Messages: int64(rep.Pruned.Messages), Statuses: int64(rep.Pruned.Statuses),
			Files: int64(rep.Pruned.Files), FileBytes: rep.Pruned.FileBytes, Contacts: int64(rep.Pruned.Contacts),
		},
	}
}

// Media is the worker's shared-files state as it reports it under
// platformv1.WorkerReportMediaKey: counts and times, and channel names (never ids,
// tokens or file names). The fetcher (internal/mediafetch) writes it; the operator turns
// Channels into MetaChannel conditions and the counts into the Tenant's status.
type Media struct {
	ReportedAt      metav1.Time  `json:"reportedAt"`
	Pending         int64        `json:"pending"`
	OldestPendingAt *metav1.Time `json:"oldestPendingAt,omitempty"`
	Fetched         int64        `json:"fetched"`
	Failed          int64        `json:"failed"`
	MetadataOnly    int64        `json:"metadataOnly"`
	// Blobs and Bytes are the distinct contents stored (after deduplication).
	Blobs int64 `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// Channels holds the channels whose fetching needs a human, by MetaChannel name.
	Channels map[string]MediaChannel `json:"channels,omitempty"`
}

// MediaChannel is one channel's fetching state.
type MediaChannel struct {
	// TokenRefusedAt is when Meta last refused the channel's access token (401/403);
	// fetching for the channel is paused until the token Secret changes.
	TokenRefusedAt *metav1.Time `json:"tokenRefusedAt,omitempty"`
	// NoToken is true when the channel has no accessTokenRef: its WhatsApp media stays
	// metadata only.
	NoToken bool `json:"noToken,omitempty"`
}
