package sqlite

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Shared files' bytes live on the tenant's volume beside the database, content-addressed:
// FilesDir/<first two hex digits>/<sha256 in hex>. One copy per content, whatever the
// number of records carrying it; a content goes when no fetched record names it any
// more (docs/shared-files.md).
//
// Crash safety: bytes are streamed to a temporary file in FilesDir (same file system),
// hashed on the way, fsynced, then, in the writer's transaction that marks the record
// fetched, renamed to their final name and the directory fsynced: a final name never
// holds partial bytes, and a record is never fetched without its bytes. Bytes are
// removed once the transaction that deleted their last record is on disk, by an
// operation of the writer of its own (removeUnreferenced). A crash between
// the rename and the commit, or between a deletion's commit and the unlink, leaves an
// unreferenced file, which the next Open sweeps away (with temporary files).

// FilesDir is the directory of stored file bytes inside the data directory.
const FilesDir = "files"

// tmpPrefix names temporary files in FilesDir; blob directories are two hex digits.
const tmpPrefix = ".tmp-"

// returningBlob is what a deletion of file rows returns (store.ReturningFileBytes).
const returningBlob = store.ReturningFileBytes

// The fetch queue's statements. A claim moves next_at to the lease's end: the file is
// not due again until then, and becomes due by itself if the fetcher dies.
const (
	sqlClaimFetches = `UPDATE files SET next_at = ?2, attempts = attempts + 1 WHERE id IN
		(SELECT id FROM files WHERE state = 'pending' AND next_at <= ?1 ORDER BY next_at, id LIMIT ?3)
		RETURNING id, platform, message_id, idx, channel, COALESCE(media_id, ''), attempts - 1, COALESCE(received_at, 0), doc`
	sqlRetryFile = `UPDATE files SET next_at = ?, fail_reason = ?
		WHERE platform = ? AND message_id = ? AND idx = ? AND state = 'pending'`
	sqlFailFile = `UPDATE files SET state = ?, fail_reason = ?, next_at = NULL
		WHERE platform = ? AND message_id = ? AND idx = ? AND state = 'pending'`
	// A release takes back the claim's attempt; never below zero, should a file be
	// released that its claim did not count (a claim before a crash, say).
	sqlReleaseFile = `UPDATE files SET next_at = ?, attempts = max(attempts - 1, 0)
		WHERE platform = ? AND message_id = ? AND idx = ? AND state = 'pending'`
	sqlFetchedFile = `UPDATE files SET state = 'fetched', sha256 = ?, size = ?, mime_type = COALESCE(?, mime_type),
		next_at = NULL, fail_reason = NULL, content = ? WHERE id = ?`
	// A file record by its key, stored in either form (keyed hash, or clear while a
	// store opened with Keys still holds clear identifiers): ?2 and ?3.
	sqlFileRow = `SELECT id, state, COALESCE(sha256, ''), COALESCE(size, 0), COALESCE(content, ''), message_id, doc
		FROM files WHERE platform = ?1 AND message_id IN (?2, ?3) AND idx = ?4`
	sqlBlobUsed = `SELECT EXISTS (SELECT 1 FROM files WHERE sha256 = ?)`
)

// blobPath is where the bytes with content address addr live: a hex SHA-256 (bytes in
// clear) or a keyed hash (sealed bytes, blob.go), named without its prefix.
func blobPath(dir, addr string) string {
	name := strings.TrimPrefix(addr, store.HashedIDPrefix)
	return filepath.Join(dir, FilesDir, name[:2], name)
}

// hashedAddrLen is the length of a keyed content address without its prefix.
var hashedAddrLen = base64.RawURLEncoding.EncodedLen(store.HashedIDSize)

// validSum reports whether addr is a content address: 64 lowercase hex digits, or a
// keyed hash.
func validSum(addr string) bool {
	if rest, ok := strings.CutPrefix(addr, store.HashedIDPrefix); ok {
		b, err := base64.RawURLEncoding.DecodeString(rest)
		return err == nil && len(b) == store.HashedIDSize
	}
	if len(addr) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(addr)
	return err == nil && strings.ToLower(addr) == addr
}

// addrOfName is the content address a file named name in a blob directory holds, or
// "" for a name that is none.
func addrOfName(name string) string {
	if len(name) == hashedAddrLen && validSum(store.HashedIDPrefix+name) {
		return store.HashedIDPrefix + name
	}
	if validSum(name) {
		return name
	}
	return ""
}

// ClaimFetches implements store.FileStore, as one operation of the single writer.
func (s *Store) ClaimFetches(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]store.FetchJob, error) {
	if limit <= 0 {
		return nil, nil
	}
	var jobs []store.FetchJob
	err := s.submitSealed(ctx, func(ctx context.Context, t *txn) error {
		jobs = jobs[:0]
		rows, err := t.stmt(ctx, "claimFetches").QueryContext(ctx, now.UnixMilli(), now.Add(lease).UnixMilli(), limit)
		if err != nil {
			return fmt.Errorf("claim fetches: %w", err)
		}
		defer rows.Close()
		type claimed struct {
			id  int64
			job store.FetchJob
		}
		var got []claimed
		for rows.Next() {
			var c claimed
			var platform, msgID, d string
			var received int64
			if err := rows.Scan(&c.id, &platform, &msgID, &c.job.Key.Index, &c.job.Channel, &c.job.MediaID, &c.job.Attempts, &received, &d); err != nil {
				return fmt.Errorf("claim fetches: %w", err)
			}
			doc, err := t.sl.OpenDoc(d, "files", platform, msgID, strconv.Itoa(c.job.Key.Index))
			if err != nil {
				return fmt.Errorf("claim fetches: %w", err)
			}
			if err := fetchJobDoc(&c.job, doc); err != nil {
				return err
			}
			c.job.Key.Platform = meta.Platform(platform)
			c.job.ReceivedAt = time.UnixMilli(received).UTC()
			got = append(got, c)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("claim fetches: %w", err)
		}
		// RETURNING follows no ORDER BY: oldest (first stored) first.
		slices.SortFunc(got, func(a, b claimed) int { return int(a.id - b.id) })
		for _, c := range got {
			jobs = append(jobs, c.job)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return jobs, nil
}

// fetchJobDoc fills what a job takes from the stored document (Meta's metadata): the
// message id too, which the row holds only as its keyed hash when the store encrypts.
func fetchJobDoc(j *store.FetchJob, doc []byte) error {
	var f meta.File
	if err := json.Unmarshal(doc, &f); err != nil {
		return fmt.Errorf("decode file document: %w", err)
	}
	j.Key.MessageID, j.URL, j.SHA256, j.MIMEType = f.MessageID, f.URL, f.SHA256, f.MIMEType
	return nil
}

// RetryFile implements store.FileStore.
func (s *Store) RetryFile(ctx context.Context, key store.FileKey, next time.Time, reason string) error {
	return s.pendingUpdate(ctx, "retryFile", key, next.UnixMilli(), nullable(reason))
}

// ReleaseFile implements store.FileStore.
func (s *Store) ReleaseFile(ctx context.Context, key store.FileKey, next time.Time) error {
	return s.pendingUpdate(ctx, "releaseFile", key, next.UnixMilli())
}

// FailFile implements store.FileStore.
func (s *Store) FailFile(ctx context.Context, key store.FileKey, reason string) error {
	state := store.FileFailed
	if reason == store.FailNoToken {
		state = store.FileMetadataOnly
	}
	return s.pendingUpdate(ctx, "failFile", key, state, nullable(reason))
}

// pendingUpdate runs a statement that changes a pending file, with args followed by
// the file's key; none changed means the record is gone or no longer pending (fetched
// by another claim).
func (s *Store) pendingUpdate(ctx context.Context, name string, key store.FileKey, args ...any) error {
	return s.submitSealed(ctx, func(ctx context.Context, t *txn) error {
		if err := t.mixedConvert(ctx, string(key.Platform), key.MessageID); err != nil {
			return err
		}
		n, err := t.exec(ctx, name, append(args, string(key.Platform), t.sl.ID(store.PurposeMessageID, key.MessageID), key.Index)...)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%s: %w (or no longer pending)", name, store.ErrFileGone)
		}
		return nil
	})
}

// StoreFileBytes implements store.FileStore: the bytes are streamed to a temporary file
// off the writer's path (sealed as they come when the store encrypts); only the rename
// and the row update are the writer's.
func (s *Store) StoreFileBytes(ctx context.Context, key store.FileKey, r io.Reader, maxBytes int64, mimeType string) (store.StoredBytes, error) {
	if s.readOnly {
		return store.StoredBytes{}, store.ErrReadOnly
	}
	sl, err := s.keys.Sealing()
	if err != nil {
		return store.StoredBytes{}, err
	}
	row, err := s.fileRow(ctx, s.r, sl, key)
	if err != nil {
		return store.StoredBytes{}, err
	}
	if row.State == store.FileFetched {
		return store.StoredBytes{SHA256: row.SHA256, Size: row.Size}, nil
	}
	tmp, sum, size, err := s.writeTemp(r, maxBytes, row.Declared, sl)
	if err != nil {
		return store.StoredBytes{}, err
	}
	addr := sl.ID(store.PurposeContent, sum)
	// Whatever happens below, the temporary name is gone at the end: renamed, or removed.
	defer os.Remove(tmp) //nolint:errcheck // usually renamed already; a leftover is swept at the next Open
	var out store.StoredBytes
	renamed := false
	err = s.submit(ctx, func(ctx context.Context, t *txn) error {
		t.sl = sl
		if err := t.mixedConvert(ctx, string(key.Platform), key.MessageID); err != nil {
			return err
		}
		row, err := s.fileRow(ctx, t.tx, sl, key)
		if err != nil {
			return err
		}
		if row.State == store.FileFetched {
			out = store.StoredBytes{SHA256: row.SHA256, Size: row.Size}
			return nil
		}
		if _, err := os.Stat(blobPath(s.dir, addr)); err != nil {
			if err := s.placeBlob(tmp, addr); err != nil {
				return fmt.Errorf("store file: %w", err)
			}
			// A group that fails after this is run again request by request: the bytes
			// are then under their final name already, and this request put them there.
			renamed = true
		}
		out = store.StoredBytes{SHA256: sum, Size: size, New: renamed}
		var content any
		if sl.Encrypts() {
			sealed, err := sl.SealDoc([]byte(sum), fileContentIdentity, string(key.Platform), row.MessageID, strconv.Itoa(key.Index))
			if err != nil {
				return err
			}
			content = sealed
		}
		_, err = t.exec(ctx, "fetchedFile", addr, size, nullable(mimeType), content, row.ID)
		return err
	})
	if err != nil {
		return store.StoredBytes{}, err
	}
	return out, nil
}

// fileRow is what the store reads of a file record: store.FileRow, with SHA256 the
// true digest of the stored bytes (Addr their content address) and the stored form
// of the message id.
type fileRow struct {
	store.FileRow
	Addr      string
	MessageID string
}

// rowQuerier is a reader connection or the writer's transaction.
type rowQuerier interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

func (s *Store) fileRow(ctx context.Context, q rowQuerier, sl store.Sealing, key store.FileKey) (fileRow, error) {
	var f fileRow
	var content, doc string
	err := q.QueryRowContext(ctx, sqlFileRow, string(key.Platform), sl.ID(store.PurposeMessageID, key.MessageID), key.MessageID, key.Index).
		Scan(&f.ID, &f.State, &f.Addr, &f.Size, &content, &f.MessageID, &doc)
	if errors.Is(err, sql.ErrNoRows) {
		return f, store.ErrFileGone
	}
	if err != nil {
		return f, fmt.Errorf("read file record: %w", err)
	}
	idx := strconv.Itoa(key.Index)
	d, err := sl.OpenDoc(doc, "files", string(key.Platform), f.MessageID, idx)
	if err != nil {
		return f, fmt.Errorf("read file record: %w", err)
	}
	var m meta.File
	if err := json.Unmarshal(d, &m); err != nil {
		return f, fmt.Errorf("decode file document: %w", err)
	}
	f.Declared, f.SHA256 = m.SHA256, f.Addr
	if content != "" {
		sum, err := sl.OpenDoc(content, fileContentIdentity, string(key.Platform), f.MessageID, idx)
		if err != nil {
			return f, fmt.Errorf("read file record: %w", err)
		}
		f.SHA256 = string(sum)
	}
	return f, nil
}

// createTemp creates a new temporary file in the files directory.
func (s *Store) createTemp() (string, *os.File, error) {
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	tmp := filepath.Join(s.dir, FilesDir, tmpPrefix+hex.EncodeToString(suffix[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", nil, fmt.Errorf("store file: %w", err)
	}
	return tmp, f, nil
}

// writeTemp streams r into a new temporary file, hashing it (and sealing it when sl
// encrypts), and fsyncs it. It reads at most maxBytes+1 bytes: one more than allowed
// tells a file that is too large.
func (s *Store) writeTemp(r io.Reader, maxBytes int64, declared string, sl store.Sealing) (path, sum string, size int64, err error) {
	tmp, f, err := s.createTemp()
	if err != nil {
		return "", "", 0, err
	}
	defer func() {
		if err != nil { // nothing of a refused or failed file is kept
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	h := sha256.New()
	limited := io.LimitReader(r, maxBytes+1)
	if sl.Encrypts() {
		size, err = sealedBlob(f, limited, sl, h)
	} else {
		size, err = io.CopyBuffer(io.MultiWriter(f, h), limited, make([]byte, 64<<10))
	}
	if err != nil {
		return "", "", 0, fmt.Errorf("store file: read: %w", err)
	}
	if size > maxBytes {
		return "", "", 0, fmt.Errorf("store file: more than %d bytes: %w", maxBytes, store.ErrTooLarge)
	}
	digest := h.Sum(nil)
	if !store.ChecksumMatches(declared, digest) {
		return "", "", 0, fmt.Errorf("store file: %w", store.ErrChecksum)
	}
	if err = f.Sync(); err != nil {
		return "", "", 0, fmt.Errorf("store file: sync: %w", err)
	}
	if err = f.Close(); err != nil {
		return "", "", 0, fmt.Errorf("store file: %w", err)
	}
	return tmp, hex.EncodeToString(digest), size, nil
}

// syncDir makes a rename or an unlink in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close() //nolint:errcheck // read-only handle; Sync's error is the one that matters
	return d.Sync()
}

// OpenFile implements store.FileStore (works on a read-only store: the export).
// Sealed bytes are opened as they are read, and checked against the record's digest.
func (s *Store) OpenFile(ctx context.Context, key store.FileKey) (io.ReadCloser, error) {
	sl, err := s.keys.Sealing()
	if err != nil {
		return nil, err
	}
	row, err := s.fileRow(ctx, s.r, sl, key)
	if err != nil {
		return nil, err
	}
	if row.State != store.FileFetched {
		return nil, fmt.Errorf("open file: the file is %s, not fetched", row.State)
	}
	if store.IsHashedID(row.Addr) {
		return openBlob(blobPath(s.dir, row.Addr), sl, row.SHA256)
	}
	f, err := os.Open(blobPath(s.dir, row.Addr))
	if err != nil {
		return nil, fmt.Errorf("open file: %w", err)
	}
	return f, nil
}

// FileStats implements store.FileStore.
func (s *Store) FileStats(ctx context.Context, _ time.Time) (store.FileStats, error) {
	var st store.FileStats
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return st, fmt.Errorf("file stats: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	if err := scanFileStats(ctx, tx, &st); err != nil {
		return st, err
	}
	return st, nil
}

func scanFileStats(ctx context.Context, tx *sql.Tx, st *store.FileStats) error {
	rows, err := tx.QueryContext(ctx, store.SQLFileStatsStates)
	if err != nil {
		return fmt.Errorf("file stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return fmt.Errorf("file stats: %w", err)
		}
		st.Count(state, n)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("file stats: %w", err)
	}
	var oldest int64
	if err := tx.QueryRowContext(ctx, store.SQLFileStatsPending).Scan(&oldest); err != nil {
		return fmt.Errorf("file stats: %w", err)
	}
	st.OldestPending = store.OldestPending(st.Pending, oldest)
	if err := tx.QueryRowContext(ctx, store.SQLFileStatsBlobs).Scan(&st.Blobs, &st.Bytes); err != nil {
		return fmt.Errorf("file stats: %w", err)
	}
	return nil
}

// removeUnreferenced unlinks the stored bytes among sums that no file record names any
// more. sums are the bytes of records whose deletion is committed and on disk (the
// caller's submit returned): only then may the bytes go, or a crash could bring back a
// record without its bytes. The check and the unlink are one operation of the writer,
// so that no store of the same bytes runs in between; the check runs in the group's
// transaction, so a record of that same group naming the bytes keeps them. Failures
// are left to the sweep at the next Open: the deletion itself is done.
func (s *Store) removeUnreferenced(ctx context.Context, sums []string) {
	sums = slices.Compact(slices.Sorted(slices.Values(slices.DeleteFunc(sums, func(sum string) bool { return !validSum(sum) }))))
	if len(sums) == 0 {
		return
	}
	_ = s.submit(context.WithoutCancel(ctx), func(ctx context.Context, t *txn) error {
		dirs := map[string]bool{}
		for _, sum := range sums {
			var used bool
			if err := t.stmt(ctx, "blobUsed").QueryRowContext(ctx, sum).Scan(&used); err != nil || used {
				continue // on error, keep: the next Open's sweep decides again
			}
			p := blobPath(s.dir, sum)
			if err := os.Remove(p); err == nil {
				dirs[filepath.Dir(p)] = true
			}
		}
		for d := range dirs {
			_ = syncDir(d) // best effort: an unlink that does not last is swept at the next Open
		}
		return nil
	})
}

// sweepFiles removes temporary files and bytes no record names: what a crash between a
// rename and its commit, or between a deletion's commit and its unlink, left behind.
// At Open, before the writer starts.
func (s *Store) sweepFiles() error {
	root := filepath.Join(s.dir, FilesDir)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("create files dir: %w", err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("sweep files: %w", err)
	}
	used, err := s.w.Prepare(sqlBlobUsed)
	if err != nil {
		return fmt.Errorf("sweep files: %w", err)
	}
	defer used.Close() //nolint:errcheck // a prepared statement
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.Remove(filepath.Join(root, e.Name())); err != nil {
				return fmt.Errorf("sweep files: %w", err)
			}
			continue
		}
		if !e.IsDir() || len(e.Name()) != 2 {
			continue
		}
		blobs, err := os.ReadDir(filepath.Join(root, e.Name()))
		if err != nil {
			return fmt.Errorf("sweep files: %w", err)
		}
		for _, b := range blobs {
			addr := addrOfName(b.Name())
			if addr == "" {
				continue
			}
			var inUse bool
			if err := used.QueryRow(addr).Scan(&inUse); err != nil {
				return fmt.Errorf("sweep files: %w", err)
			}
			if !inUse {
				if err := os.Remove(filepath.Join(root, e.Name(), b.Name())); err != nil {
					return fmt.Errorf("sweep files: %w", err)
				}
			}
		}
	}
	return syncDir(root)
}
