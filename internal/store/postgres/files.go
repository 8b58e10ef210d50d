package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Shared files' bytes live in the tenant's database, in chunks of store.BlobChunk bytes
// keyed by their content address (blobs): every replica sees them, DROP DATABASE erases
// them, and one transaction writes a file's chunks and marks its record fetched, so a
// crash leaves either both or neither. One copy per content: a content goes, in the
// transaction that deletes its last record (erasure, retention, unsend), when no record
// names it any more (docs/shared-files.md).
//
// Deduplication and removal meet on an advisory lock per content address (lockBlob),
// taken after the file rows' locks in both: a store of bytes another record is being
// deleted with either commits first (and the deletion sees the new reference and keeps
// the bytes) or waits, and then finds the bytes gone and keeps its own copy.

// filesSchema adds the fetch queue's columns to a database created before them: records
// stored then join the queue when there is something to fetch and Meta allows storing
// it (store.InitialFileState). Then the queue's indexes and the blobs table.
const filesSchema = `
ALTER TABLE erasures ADD COLUMN IF NOT EXISTS file_bytes BIGINT NOT NULL DEFAULT 0;
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = 'files' AND column_name = 'state') THEN
		ALTER TABLE files ADD COLUMN state TEXT NOT NULL DEFAULT 'metadataOnly',
			ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0, ADD COLUMN next_at BIGINT,
			ADD COLUMN received_at BIGINT, ADD COLUMN fail_reason TEXT, ADD COLUMN sha256 TEXT,
			ADD COLUMN size BIGINT, ADD COLUMN mime_type TEXT;
		UPDATE files SET state = 'pending', next_at = 0, received_at = (extract(epoch FROM now()) * 1000)::bigint
			WHERE doc LIKE '{%' -- sealed documents (no store this old holds one) are no JSON
				AND NOT COALESCE(((CASE WHEN doc LIKE '{%' THEN doc::jsonb END) ->> 'noFetch')::boolean, false)
				AND (media_id IS NOT NULL OR COALESCE((CASE WHEN doc LIKE '{%' THEN doc::jsonb END) ? 'url', false));
	END IF;
END $$;
CREATE INDEX IF NOT EXISTS files_due ON files(next_at, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS files_sha256 ON files(sha256) WHERE sha256 IS NOT NULL;
CREATE TABLE IF NOT EXISTS blobs (
	sha256 TEXT NOT NULL, -- hex content address; a temporary key while being written
	seq    INTEGER NOT NULL,
	data   BYTEA NOT NULL,
	PRIMARY KEY (sha256, seq)
);
`

// lockBlob is the advisory lock class of content addresses (see the Advisory locks).
const lockBlob int32 = 0x4f4d0004

// returningBlob is what a deletion of file rows returns (store.ReturningFileBytes).
const returningBlob = store.ReturningFileBytes

// The fetch queue's statements. A claim moves next_at to the lease's end: the file is
// not due again until then, and becomes due by itself if the fetcher dies. SKIP LOCKED:
// replicas claiming at once take different files instead of waiting for each other.
const (
	// An array of ids rather than a join: the rows are then found by their primary key,
	// never by a join that reads the table.
	sqlClaimFetches = `UPDATE files SET next_at = $2, attempts = attempts + 1 WHERE id = ANY(ARRAY(
		SELECT id FROM files WHERE state = 'pending' AND next_at <= $1 ORDER BY next_at, id LIMIT $3 FOR UPDATE SKIP LOCKED))
		RETURNING id, COALESCE(media_id, ''), attempts - 1, COALESCE(received_at, 0), doc, platform, message_id, idx::text`
	sqlRetryFile = `UPDATE files SET next_at = $1, fail_reason = $2
		WHERE platform = $3 AND message_id = $4 AND idx = $5 AND state = 'pending'`
	sqlFailFile = `UPDATE files SET state = $1, fail_reason = $2, next_at = NULL
		WHERE platform = $3 AND message_id = $4 AND idx = $5 AND state = 'pending'`
	// A release takes back the claim's attempt; never below zero, should a file be
	// released that its claim did not count (a claim before a crash, say).
	sqlReleaseFile = `UPDATE files SET next_at = $1, attempts = GREATEST(attempts - 1, 0)
		WHERE platform = $2 AND message_id = $3 AND idx = $4 AND state = 'pending'`
	// The declared sha256 is read from the document in Go: it may be sealed.
	sqlFileRow = `SELECT id, state, COALESCE(sha256, ''), COALESCE(size, 0), doc, COALESCE(content, '')
		FROM files WHERE platform = $1 AND message_id = $2 AND idx = $3`
	sqlFetchedFile = `UPDATE files SET state = 'fetched', sha256 = $1, size = $2, mime_type = COALESCE($3, mime_type),
		next_at = NULL, fail_reason = NULL, content = $5 WHERE id = $4`
	sqlInsertChunk = `INSERT INTO blobs(sha256, seq, data) VALUES ($1, $2, $3)`
	sqlTakeChunk   = `DELETE FROM blobs WHERE sha256 = $1 AND seq = $2 RETURNING data`
	sqlBlobExists  = `SELECT EXISTS (SELECT 1 FROM blobs WHERE sha256 = $1)`
	sqlNameBlob    = `UPDATE blobs SET sha256 = $1 WHERE sha256 = $2`
	sqlDropChunks  = `DELETE FROM blobs WHERE sha256 = $1`
	sqlReadChunk   = `SELECT data FROM blobs WHERE sha256 = $1 AND seq = $2`
	// Bytes no fetched record names any more, among those whose records were deleted.
	// The addresses are checked one by one, each an index lookup (a scalar subquery with
	// a LIMIT, which the planner cannot turn into a join reading the whole index), then
	// their chunks go.
	sqlDropBlobs = `DELETE FROM blobs WHERE sha256 = ANY(ARRAY(
		SELECT s FROM unnest($1::text[]) AS s WHERE (SELECT true FROM files WHERE sha256 = s LIMIT 1) IS NULL))`
)

// lockBlobs takes the content addresses' advisory locks, in ascending key order.
func lockBlobs(ctx context.Context, tx pgx.Tx, sums []string) error {
	var keys []int32
	for _, s := range sums {
		keys = append(keys, hashKey(s))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int4[]) AS k`, lockBlob, keys); err != nil {
		return fmt.Errorf("lock blobs: %w", err)
	}
	return nil
}

// dropBlobs deletes the chunks of sums that no file record names any more, in tx (which
// deleted the records that named them).
func dropBlobs(ctx context.Context, tx pgx.Tx, sums []string) error {
	sums = slices.DeleteFunc(slices.Clone(sums), func(s string) bool { return s == "" })
	if len(sums) == 0 {
		return nil
	}
	if err := lockBlobs(ctx, tx, sums); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, sqlDropBlobs, sums); err != nil {
		return fmt.Errorf("delete file bytes: %w", err)
	}
	return nil
}

// deletedFiles reads rows of returningBlob: how many, their bytes' size, their addresses.
func deletedFiles(rows pgx.Rows) (n int, size int64, sums []string, err error) {
	defer rows.Close()
	for rows.Next() {
		var sum string
		var sz int64
		if err := rows.Scan(&sum, &sz); err != nil {
			return n, size, sums, err
		}
		n++
		if sum != "" {
			size += sz
			sums = append(sums, sum)
		}
	}
	return n, size, sums, rows.Err()
}

// deleteFiles runs a deletion of file rows returning returningBlob and removes the bytes
// no other record names, in tx.
func deleteFiles(ctx context.Context, tx pgx.Tx, q string, args ...any) (int, int64, error) {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return 0, 0, err
	}
	n, size, sums, err := deletedFiles(rows)
	if err != nil {
		return n, size, err
	}
	return n, size, dropBlobs(ctx, tx, sums)
}

// ClaimFetches implements store.FileStore.
func (s *Store) ClaimFetches(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]store.FetchJob, error) {
	if limit <= 0 {
		return nil, nil
	}
	if s.opts.ReadOnly {
		return nil, store.ErrReadOnly
	}
	z, err := s.sealer()
	if err != nil {
		return nil, fmt.Errorf("claim fetches: %w", err)
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.inflight.Done()
	type claimed struct {
		id  int64
		job store.FetchJob
	}
	var got []claimed
	err = s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		got = got[:0]
		rows, err := tx.Query(ctx, sqlClaimFetches, now.UnixMilli(), now.Add(lease).UnixMilli(), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		var msgIDs []idRef
		for rows.Next() {
			var c claimed
			var received int64
			var stored string
			key := make([]string, 3)
			if err := rows.Scan(&c.id, &c.job.MediaID, &c.job.Attempts, &received, &stored, &key[0], &key[1], &key[2]); err != nil {
				return err
			}
			d, err := z.OpenDoc(stored, "files", key...)
			if err != nil {
				return err
			}
			// The key as Meta sent it (the document), not as stored (keyText, hashed).
			var f meta.File
			if err := json.Unmarshal(d, &f); err != nil {
				return fmt.Errorf("decode file document: %w", err)
			}
			msgIDs = append(msgIDs, idRef{f.Platform, f.MessageID})
			c.job.Key = store.FileKey{Platform: f.Platform, MessageID: f.MessageID, Index: f.Index}
			c.job.Channel, c.job.MediaID, c.job.URL, c.job.SHA256, c.job.MIMEType = f.Channel, f.MediaID, f.URL, f.SHA256, f.MIMEType
			c.job.ReceivedAt = time.UnixMilli(received).UTC()
			got = append(got, c)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// In a mixed store, the claimed files' message ids go to their hashes, by which
		// the fetcher's next calls name them.
		return z.unhash(ctx, tx, store.PurposeMessageID, msgIDs)
	})
	if err != nil {
		return nil, fmt.Errorf("claim fetches: %w", err)
	}
	// RETURNING follows no ORDER BY: oldest (first stored) first.
	slices.SortFunc(got, func(a, b claimed) int { return int(a.id - b.id) })
	jobs := make([]store.FetchJob, 0, len(got))
	for _, c := range got {
		jobs = append(jobs, c.job)
	}
	return jobs, nil
}

// RetryFile implements store.FileStore.
func (s *Store) RetryFile(ctx context.Context, key store.FileKey, next time.Time, reason string) error {
	return s.pendingUpdate(ctx, "retry file", sqlRetryFile, key, next.UnixMilli(), nullableKey(reason))
}

// ReleaseFile implements store.FileStore.
func (s *Store) ReleaseFile(ctx context.Context, key store.FileKey, next time.Time) error {
	return s.pendingUpdate(ctx, "release file", sqlReleaseFile, key, next.UnixMilli())
}

// FailFile implements store.FileStore.
func (s *Store) FailFile(ctx context.Context, key store.FileKey, reason string) error {
	state := store.FileFailed
	if reason == store.FailNoToken {
		state = store.FileMetadataOnly
	}
	return s.pendingUpdate(ctx, "fail file", sqlFailFile, key, state, nullableKey(reason))
}

// pendingUpdate runs a statement that changes a pending file (args, then the file's
// platform, message id and index); none changed means the record is gone or no longer
// pending (fetched by another claim).
func (s *Store) pendingUpdate(ctx context.Context, name, q string, key store.FileKey, args ...any) error {
	if s.opts.ReadOnly {
		return store.ErrReadOnly
	}
	z, err := s.sealer()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.inflight.Done()
	var ct pgconn.CommandTag
	for _, id := range z.fileIDForms(key.MessageID) {
		ct, err = s.pool.Exec(ctx, q, append(args, keyText(string(key.Platform)), id, key.Index)...)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if ct.RowsAffected() > 0 {
			break
		}
	}
	if ct.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w (or no longer pending)", name, store.ErrFileGone)
	}
	return nil
}

// fileIDForms are the stored forms a file's message id is looked up by: its stored
// form, and in a mixed store its clear form too (seal.go).
func (z sealer) fileIDForms(messageID string) []string {
	ids := []string{z.msgID(messageID)}
	if z.mixed {
		ids = append(ids, keyText(messageID))
	}
	return ids
}

// fileRow is what is read of a file record before storing or reading its bytes.
type fileRow struct {
	store.FileRow
	// addr is the sha256 column: the stored bytes' content address (their hex
	// SHA-256 in a clear store, a keyed hash of it when encrypting); FileRow.SHA256 is
	// the true hex SHA-256 either way.
	addr string
	key  []string // platform, message id and index, as stored
}

func readFileRow(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, z sealer, key store.FileKey, forUpdate bool) (fileRow, error) {
	sql := sqlFileRow
	if forUpdate {
		sql += " FOR UPDATE"
	}
	var f fileRow
	var doc, content string
	var err error
	for _, id := range z.fileIDForms(key.MessageID) {
		f.key = []string{keyText(string(key.Platform)), id, strconv.Itoa(key.Index)}
		err = q.QueryRow(ctx, sql, f.key[0], id, key.Index).Scan(&f.ID, &f.State, &f.addr, &f.Size, &doc, &content)
		if !errors.Is(err, pgx.ErrNoRows) {
			break
		}
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return f, store.ErrFileGone
	}
	if err != nil {
		return f, fmt.Errorf("read file record: %w", err)
	}
	d, err := z.OpenDoc(doc, "files", f.key...)
	if err != nil {
		return f, fmt.Errorf("read file record: %w", err)
	}
	var declared struct {
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal(d, &declared); err != nil {
		return f, fmt.Errorf("read file record: decode: %w", err)
	}
	f.Declared = declared.SHA256
	if f.SHA256, err = storedSHA256(z, f.addr, content, f.key); err != nil {
		return f, fmt.Errorf("read file record: %w", err)
	}
	return f, nil
}

// StoreFileBytes implements store.FileStore. The chunks go in under a temporary key in
// the same transaction that, once the content is known, gives them their address (or
// drops them, when the content is stored already) and marks the record fetched: nothing
// is visible before the commit, and a crash rolls everything back. The record's row is
// locked only at the end, so an erasure does not wait for a download.
func (s *Store) StoreFileBytes(ctx context.Context, key store.FileKey, r io.Reader, maxBytes int64, mimeType string) (store.StoredBytes, error) {
	if s.opts.ReadOnly {
		return store.StoredBytes{}, store.ErrReadOnly
	}
	z, err := s.sealer()
	if err != nil {
		return store.StoredBytes{}, fmt.Errorf("store file: %w", err)
	}
	if err := s.enter(); err != nil {
		return store.StoredBytes{}, err
	}
	defer s.inflight.Done()
	row, err := readFileRow(ctx, s.pool, z, key, false)
	if err != nil {
		return store.StoredBytes{}, err
	}
	if row.State == store.FileFetched {
		return store.StoredBytes{SHA256: row.SHA256, Size: row.Size}, nil
	}
	// Not inTx: the reader cannot be read twice, so a failed attempt is the caller's to
	// retry (the fetcher's backoff).
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return store.StoredBytes{}, fmt.Errorf("store file: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	sum, size, tmp, err := writeChunks(ctx, tx, z, r, maxBytes)
	if err != nil {
		return store.StoredBytes{}, err
	}
	if !store.ChecksumMatches(row.Declared, sum) {
		return store.StoredBytes{}, fmt.Errorf("store file: %w", store.ErrChecksum)
	}
	out, keep, err := nameBlob(ctx, tx, z, key, hex.EncodeToString(sum), size, tmp, mimeType)
	if err != nil || !keep {
		return out, err // gone, or fetched meanwhile: rolled back
	}
	if err := tx.Commit(ctx); err != nil {
		return store.StoredBytes{}, fmt.Errorf("store file: commit: %w", err)
	}
	return out, nil
}

// writeChunks streams r into chunks under a temporary key, hashing it; it reads at most
// maxBytes+1 bytes (one more than allowed tells a file that is too large). When the
// store encrypts, the chunks are sealed under the temporary key (nothing reaches the
// table in clear, not even in a transaction that rolls back), and sealed again under
// the content address once it is known (nameBlob).
func writeChunks(ctx context.Context, tx pgx.Tx, z sealer, r io.Reader, maxBytes int64) (sum []byte, size int64, tmp string, err error) {
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	tmp = "tmp-" + hex.EncodeToString(suffix[:])
	h := sha256.New()
	lr := io.LimitReader(r, maxBytes+1)
	buf := make([]byte, store.BlobChunk)
	for seq := 0; ; seq++ {
		n, rerr := io.ReadFull(lr, buf)
		if n > 0 {
			size += int64(n)
			if size > maxBytes {
				return nil, 0, "", fmt.Errorf("store file: more than %d bytes: %w", maxBytes, store.ErrTooLarge)
			}
			h.Write(buf[:n])
			chunk, err := z.SealBytes(buf[:n], tmp, seq, false)
			if err != nil {
				return nil, 0, "", fmt.Errorf("store file: %w", err)
			}
			if _, err := tx.Exec(ctx, sqlInsertChunk, tmp, seq, chunk); err != nil {
				return nil, 0, "", fmt.Errorf("store file: write chunk: %w", err)
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			return h.Sum(nil), size, tmp, nil
		}
		if rerr != nil {
			return nil, 0, "", fmt.Errorf("store file: read: %w", rerr)
		}
	}
}

// nameBlob locks the record, then the content address; keeps the chunks under tmp as
// the content's (or drops them, when the content is stored already) and marks the
// record fetched (keep: commit). A record gone meanwhile is ErrFileGone; one fetched
// meanwhile returns its stored description, and the caller rolls back.
func nameBlob(ctx context.Context, tx pgx.Tx, z sealer, key store.FileKey, sum string, size int64, tmp, mimeType string) (out store.StoredBytes, keep bool, err error) {
	// In a mixed store the record's key is hashed first: its content hash is sealed
	// under the key it keeps.
	if err := z.unhash(ctx, tx, store.PurposeMessageID, []idRef{{key.Platform, key.MessageID}}); err != nil {
		return out, false, err
	}
	row, err := readFileRow(ctx, tx, z, key, true)
	if err != nil {
		return out, false, err
	}
	if row.State == store.FileFetched {
		return store.StoredBytes{SHA256: row.SHA256, Size: row.Size}, false, nil
	}
	addr := z.ID(store.PurposeContent, sum)
	if err := lockBlobs(ctx, tx, []string{addr}); err != nil {
		return out, false, err
	}
	var exists bool
	if err := tx.QueryRow(ctx, sqlBlobExists, addr).Scan(&exists); err != nil {
		return out, false, fmt.Errorf("store file: %w", err)
	}
	switch {
	case exists:
		_, err = tx.Exec(ctx, sqlDropChunks, tmp)
	case z.Encrypts():
		err = moveChunks(ctx, tx, z, tmp, addr, chunkCount(size), z.OpenBytes)
	default:
		_, err = tx.Exec(ctx, sqlNameBlob, addr, tmp)
	}
	if err != nil {
		return out, false, fmt.Errorf("store file: %w", err)
	}
	var content any // the true SHA-256, sealed, beside the address it cannot be read from
	if z.Encrypts() {
		if content, err = z.SealDoc([]byte(sum), contentIdentity, row.key...); err != nil {
			return out, false, err
		}
	}
	if _, err := tx.Exec(ctx, sqlFetchedFile, addr, size, nullableKey(mimeType), row.ID, content); err != nil {
		return out, false, fmt.Errorf("store file: %w", err)
	}
	return store.StoredBytes{SHA256: sum, Size: size, New: !exists}, true, nil
}

// chunkCount is how many chunks size bytes are stored in.
func chunkCount(size int64) int { return int((size + store.BlobChunk - 1) / store.BlobChunk) }

// moveChunks takes the n chunks under from, opens each with open (as chunks under from:
// index, and last false, as writeChunks sealed them; or a clear content's, which open
// returns as they are) and stores them sealed under the content address to.
func moveChunks(ctx context.Context, tx pgx.Tx, z sealer, from, to string, n int,
	open func(stored []byte, addr string, index int, last bool) ([]byte, error)) error {
	for seq := range n {
		var data []byte
		if err := tx.QueryRow(ctx, sqlTakeChunk, from, seq).Scan(&data); err != nil {
			return fmt.Errorf("read chunk %d: %w", seq, err)
		}
		plain, err := open(data, from, seq, false)
		if err != nil {
			return err
		}
		sealed, err := z.SealBytes(plain, to, seq, seq == n-1)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, sqlInsertChunk, to, seq, sealed); err != nil {
			return fmt.Errorf("write chunk %d: %w", seq, err)
		}
	}
	return nil
}

// OpenFile implements store.FileStore: the chunks are read one at a time.
func (s *Store) OpenFile(ctx context.Context, key store.FileKey) (io.ReadCloser, error) {
	z, err := s.sealer()
	if err != nil {
		return nil, fmt.Errorf("open file: %w", err)
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.inflight.Done()
	row, err := readFileRow(ctx, s.pool, z, key, false)
	if err != nil {
		return nil, err
	}
	if row.State != store.FileFetched {
		return nil, fmt.Errorf("open file: the file is %s, not fetched", row.State)
	}
	sealed := store.IsHashedID(row.addr)
	if sealed && !z.Encrypts() {
		return nil, fmt.Errorf("open file: %w", store.ErrKeyUnavailable)
	}
	return &chunkReader{ctx: ctx, s: s, z: z, sealed: sealed, sum: row.addr, n: chunkCount(row.Size), left: row.Size}, nil
}

// chunkReader reads a blob's chunks in order until size bytes were read, opening each
// when they are sealed.
type chunkReader struct {
	ctx    context.Context
	s      *Store
	z      sealer
	sealed bool
	sum    string // the content address
	seq    int
	n      int // chunks
	left   int64
	buf    []byte
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.buf) == 0 {
		if c.left <= 0 {
			return 0, io.EOF
		}
		if err := c.s.enter(); err != nil {
			return 0, err
		}
		err := c.s.pool.QueryRow(c.ctx, sqlReadChunk, c.sum, c.seq).Scan(&c.buf)
		c.s.inflight.Done()
		if err != nil {
			return 0, fmt.Errorf("read file chunk %d: %w", c.seq, err)
		}
		if c.sealed {
			if c.buf, err = c.z.OpenBytes(c.buf, c.sum, c.seq, c.seq == c.n-1); err != nil {
				return 0, fmt.Errorf("read file chunk %d: %w", c.seq, err)
			}
		}
		c.seq++
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	c.left -= int64(n)
	return n, nil
}

func (c *chunkReader) Close() error { return nil }

// FileStats implements store.FileStore, from one snapshot.
func (s *Store) FileStats(ctx context.Context, _ time.Time) (store.FileStats, error) {
	var st store.FileStats
	if err := s.enter(); err != nil {
		return st, err
	}
	defer s.inflight.Done()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return st, fmt.Errorf("file stats: %w", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	rows, err := tx.Query(ctx, store.SQLFileStatsStates)
	if err != nil {
		return st, fmt.Errorf("file stats: %w", err)
	}
	for rows.Next() {
		var state string
		var n int64
		if err := rows.Scan(&state, &n); err != nil {
			rows.Close()
			return st, fmt.Errorf("file stats: %w", err)
		}
		st.Count(state, int(n))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("file stats: %w", err)
	}
	var oldest int64
	if err := tx.QueryRow(ctx, store.SQLFileStatsPending).Scan(&oldest); err != nil {
		return st, fmt.Errorf("file stats: %w", err)
	}
	st.OldestPending = store.OldestPending(st.Pending, oldest)
	var blobs int64
	if err := tx.QueryRow(ctx, store.SQLFileStatsBlobs).Scan(&blobs, &st.Bytes); err != nil {
		return st, fmt.Errorf("file stats: %w", err)
	}
	st.Blobs = int(blobs)
	return st, nil
}
