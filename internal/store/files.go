package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store/docenc"
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
	// Attempts already made: claims before this one (a claim counts as an attempt, so
	// that a file whose fetch kills the worker does not loop forever), and when the
	// record was stored (a media id's lifetime counts from there).
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

// Count adds n files in state to the counts of st.
func (st *FileStats) Count(state string, n int) {
	switch state {
	case FilePending:
		st.Pending += n
	case FileFetched:
		st.Fetched += n
	case FileFailed:
		st.Failed += n
	case FileMetadataOnly:
		st.MetadataOnly += n
	}
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
	// fetched with mimeType (kept as declared when empty). When Meta declared a sha256
	// for the file and the bytes do not match it, the error wraps ErrChecksum and
	// nothing is kept. A crash at any point leaves either no trace or the whole bytes
	// under their final name; never a partial file visible as fetched. Calling it again
	// for a fetched file is a no-op that returns the stored description (New false).
	StoreFileBytes(ctx context.Context, key FileKey, r io.Reader, maxBytes int64, mimeType string) (StoredBytes, error)
	// RetryFile records why an attempt failed (reason is one of the Fail constants or a
	// short transient reason such as "Timeout" or "Status500"; the attempt itself was
	// counted by its claim) and makes the file due at next.
	RetryFile(ctx context.Context, key FileKey, next time.Time, reason string) error
	// ReleaseFile returns a claimed file to the queue, due at next, without counting the
	// claim: the attempt the claim added is taken back and the lease ends. The fetcher
	// releases the files it will not try now (their channel's token is refused), so that
	// waiting, however long, spends none of their attempts. ErrFileGone when the record
	// is gone or no longer pending.
	ReleaseFile(ctx context.Context, key FileKey, next time.Time) error
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

// ErrChecksum is wrapped by StoreFileBytes when the bytes do not match the sha256 Meta
// declared for the file: the fetcher fails the file with FailChecksum.
var ErrChecksum = errors.New("file bytes do not match the declared sha256")

// InitialFileState is the state a file record is stored in by Commit: pending when there
// is something to fetch (a media id or a URL) and Meta's policy allows storing it,
// metadata-only otherwise.
func InitialFileState(f *meta.File) string {
	if f.NoFetch || f.MediaID == "" && f.URL == "" {
		return FileMetadataOnly
	}
	return FilePending
}

// ChecksumMatches reports whether sum (the SHA-256 of the stored bytes) matches what Meta
// declared: WhatsApp sends the digest in standard base64; hex is accepted too. An empty
// or unreadable declaration matches anything (there is nothing to check against).
func ChecksumMatches(declared string, sum []byte) bool {
	want, ok := DecodeSHA256(declared)
	return !ok || bytes.Equal(want, sum)
}

// DecodeSHA256 reads a SHA-256 as Meta declares it (hex, or base64 in any of its
// alphabets, padded or not); false when declared is empty or not a SHA-256, which
// declares nothing that could be checked.
func DecodeSHA256(declared string) ([]byte, bool) {
	declared = strings.TrimSpace(declared)
	if declared == "" {
		return nil, false
	}
	if want, err := hex.DecodeString(declared); err == nil && len(want) == sha256.Size {
		return want, true
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if want, err := enc.DecodeString(declared); err == nil && len(want) == sha256.Size {
			return want, true
		}
	}
	return nil, false
}

// BlobChunk is the size of the chunks the PostgreSQL backend stores bytes in (and reads
// from a download at a time).
const BlobChunk = 1 << 20

// FileState is what a file record's export carries beyond Meta's metadata
// (docs/export-format.md): what the store did with the file.
type FileState struct {
	// State is one of FilePending, FileFetched, FileFailed, FileMetadataOnly.
	State string `json:"state"`
	// FailReason is why a failed file failed, or why a pending one's last attempt did.
	FailReason string `json:"failReason,omitempty"`
	// StoredSHA256 (hex) and Size describe the stored bytes of a fetched file; the
	// export's --files directory holds them under StoredSHA256.
	StoredSHA256 string `json:"storedSHA256,omitempty"`
	Size         int64  `json:"size,omitempty"`
}

// FileRecord is a file record's export document, decoded: Meta's metadata and what the
// store did with the file.
type FileRecord struct {
	meta.File
	FileState
}

// FileDoc is a file record's export document: the stored document (Meta's metadata),
// with mimeType set to the MIME type recorded when the bytes were stored (when one
// was), followed by the FileState keys.
func FileDoc(doc []byte, mimeType string, st FileState) ([]byte, error) {
	if mimeType != "" {
		var f meta.File
		if err := json.Unmarshal(doc, &f); err != nil {
			return nil, fmt.Errorf("decode file document: %w", err)
		}
		if f.MIMEType != mimeType {
			f.MIMEType = mimeType
			var err error
			if doc, err = docenc.Encode(&f); err != nil {
				return nil, err
			}
		}
	}
	extra, err := docenc.Marshal(st)
	if err != nil {
		return nil, err
	}
	doc = bytes.TrimSpace(doc)
	if len(doc) < 2 || doc[len(doc)-1] != '}' || extra[0] != '{' {
		return nil, errors.New("file document is not an object")
	}
	out := make([]byte, 0, len(doc)+len(extra))
	out = append(out, doc[:len(doc)-1]...)
	if len(doc) > 2 {
		out = append(out, ',')
	}
	return append(out, extra[1:]...), nil
}

// FileExportColumns are what an export reads of a file row, in both backends' SQL:
// the document, then the FileState columns and the recorded MIME type (ScanFileDoc).
const FileExportColumns = `doc, state, COALESCE(fail_reason, '') AS fail_reason, COALESCE(sha256, '') AS sha256,
	COALESCE(size, 0) AS size, COALESCE(mime_type, '') AS mime_type`

// FileExportNames are FileExportColumns' names, for a query selecting from a
// subquery that already computed them.
const FileExportNames = `doc, state, fail_reason, sha256, size, mime_type`

// ScanFileDoc reads one row of FileExportColumns into a file record's export document.
func ScanFileDoc(scan func(dest ...any) error) ([]byte, error) {
	var doc []byte
	var st FileState
	var mimeType string
	if err := scan(&doc, &st.State, &st.FailReason, &st.StoredSHA256, &st.Size, &mimeType); err != nil {
		return nil, err
	}
	return FileDoc(doc, mimeType, st)
}

// FileStats' statements, in the SQL both backends speak. They read the whole files
// table (counts by state; distinct contents through the sha256 index): metrics, not
// erasure or retention, so they are not among the plan-checked statements.
const (
	SQLFileStatsStates  = `SELECT state, count(*) FROM files GROUP BY state`
	SQLFileStatsPending = `SELECT COALESCE(min(received_at), 0) FROM files WHERE state = 'pending'`
	SQLFileStatsBlobs   = `SELECT count(*), CAST(COALESCE(sum(size), 0) AS BIGINT) FROM
		(SELECT sha256, max(size) AS size FROM files WHERE sha256 IS NOT NULL GROUP BY sha256) AS blobs`
)

// OldestPending is FileStats.OldestPending from the earliest received_at (ms) of the
// pending files: zero when none is pending.
func OldestPending(pending int, receivedMilli int64) time.Time {
	if pending == 0 || receivedMilli <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(receivedMilli).UTC()
}

// ReturningFileBytes ends a deletion of file rows in both backends' SQL: it returns the
// content address and size of each deleted record's bytes (empty and 0 when it had
// none), for removing the bytes no other record names and counting Counts.FileBytes.
const ReturningFileBytes = ` RETURNING COALESCE(sha256, ''), COALESCE(size, 0)`

// FileRow is what the backends read of a file record before storing its bytes.
type FileRow struct {
	ID       int64
	State    string
	SHA256   string // hex, of the stored bytes (fetched files)
	Size     int64
	Declared string // the sha256 Meta declared, as sent
}
