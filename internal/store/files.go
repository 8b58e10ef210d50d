package store

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// Shared files (media) have a life of their own after the delivery that announced them:
// Commit stores a file record in state FilePending (or FileMetadataOnly), the worker's
// fetcher (internal/mediafetch) claims pending records off the webhook path, downloads
// the bytes and hands them to StoreFileBytes, and every erasure path (Erase with
// ScopeFiles, Prune, a Deletion, dropping the store) removes the bytes with the record.
// Bytes are content-addressed by their SHA-256: two records carrying the same bytes
// share one copy, which goes when the last record referring to it goes.

// File states, as exported (docs/export-format.md) and counted in metrics.
const (
	// FilePending: the bytes are still to be fetched (the fetch queue).
	FilePending = "pending"
	// FileFetched: the bytes are stored.
	FileFetched = "fetched"
	// FileFailed: fetching ended for good (FailReason says why); only metadata is kept.
	FileFailed = "failed"
	// FileMetadataOnly: the bytes are never fetched: Meta's policy forbids storing them
	// (Instagram story mentions), or the channel has no access token to fetch with.
	FileMetadataOnly = "metadataOnly"
)

// Reasons a fetch fails, as recorded on a failed file and used as a metric label.
const (
	FailNotFound     = "NotFound"     // Meta answered 404: the media is gone
	FailExpired      = "Expired"      // the media id is past Meta's lifetime
	FailTooLarge     = "TooLarge"     // larger than the worker's per-file limit
	FailChecksum     = "Checksum"     // the bytes do not match the sha256 Meta declared
	FailUnauthorized = "Unauthorized" // the channel's token was refused (401/403)
	FailAttempts     = "Attempts"     // the retry budget is spent
	FailNoToken      = "NoToken"      // the channel has no access token
)

// ErrFileGone is returned by StoreFileBytes and OpenFile when the file record no longer
// exists (erased, pruned or unsent meanwhile): the fetcher drops what it downloaded.
var ErrFileGone = errors.New("file record gone")

// FileKey names one file record: the message that carried it and its position in it.
type FileKey struct {
	Platform  meta.Platform
	MessageID string
	Index     int
}

// FetchJob is a pending file claimed for fetching.
type FetchJob struct {
	Key     FileKey
	Channel string
	// MediaID (WhatsApp) is resolved through the Graph API to a short-lived URL; URL
	// (Messenger, Instagram) is fetched directly.
	MediaID string
	URL     string
	// SHA256 and MIMEType are what Meta declared, when it did.
	SHA256   string
	MIMEType string
	// Attempts already made, and when the record was stored (a media id's lifetime
	// counts from there).
	Attempts   int
	ReceivedAt time.Time
}

// StoredBytes describes bytes written for a file.
type StoredBytes struct {
	SHA256 string // hex, of the bytes as stored
	Size   int64
	// New is false when identical bytes were already stored for another record.
	New bool
}

// FileStats is the fetch queue and what is stored, for metrics and the worker report.
type FileStats struct {
	Pending       int
	OldestPending time.Time // zero when nothing is pending
	Fetched       int
	Failed        int
	MetadataOnly  int
	// Blobs and Bytes count distinct stored contents (after deduplication).
	Blobs int
	Bytes int64
}

// FileStore is the part of a Store that keeps file bytes and the fetch queue. Both
// backends implement it; the conformance suite (storetest) runs it.
type FileStore interface {
	// ClaimFetches returns up to limit pending files whose next attempt is due at or
	// before now, oldest first, and leases them until now+lease so that a second claim
	// (another fetcher goroutine, or another replica on a shared database) skips them.
	// A lease that runs out (the fetcher died) makes the file claimable again.
	ClaimFetches(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]FetchJob, error)
	// StoreFileBytes reads r to its end (at most maxBytes: more is an error wrapping
	// ErrTooLarge, and nothing is kept), stores the bytes durably and marks the file
	// fetched with mimeType. A crash at any point leaves either no trace or the whole
	// bytes under their final name; never a partial file visible as fetched. Calling it
	// again for a fetched file is a no-op that returns the stored description.
	StoreFileBytes(ctx context.Context, key FileKey, r io.Reader, maxBytes int64, mimeType string) (StoredBytes, error)
	// RetryFile records a failed attempt (reason is one of the Fail constants or a short
	// transient reason such as "Timeout" or "Status500") and makes the file due at next.
	RetryFile(ctx context.Context, key FileKey, next time.Time, reason string) error
	// FailFile ends fetching of a file for good with reason: state FileFailed, or
	// FileMetadataOnly for FailNoToken (the channel cannot fetch; nothing went wrong).
	FailFile(ctx context.Context, key FileKey, reason string) error
	// OpenFile opens a fetched file's bytes (export --files).
	OpenFile(ctx context.Context, key FileKey) (io.ReadCloser, error)
	// FileStats reports the queue and what is stored.
	FileStats(ctx context.Context, now time.Time) (FileStats, error)
}

// ErrTooLarge is wrapped by StoreFileBytes when the bytes exceed the limit.
var ErrTooLarge = errors.New("file larger than the limit")
