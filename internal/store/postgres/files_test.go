package postgres

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// The file suite reads the blobs table on a connection of its own, beneath the store:
// every content stored, chunks reassembled, temporary keys included.
func TestFilesConformance(t *testing.T) {
	storetest.RunFiles(t, func(t *testing.T) (store.Store, storetest.Stored) {
		dsn := pgtest.FreshDatabase(t)
		return openDSN(t, dsn, Options{}), func(t *testing.T) [][]byte { return rawBlobs(t, dsn) }
	})
}

// connect is a connection of the test's own to dsn, beneath the store.
func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func rawBlobs(t *testing.T, dsn string) [][]byte { return readBlobs(t, dsn, nil) }

// readBlobs is every content in the blobs table, its chunks in order, each passed
// through open when it is not nil (with its address, index and whether it is its
// content's last).
func readBlobs(t *testing.T, dsn string, open func(addr string, seq int, last bool, data []byte) []byte) [][]byte {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, dsn)
	rows, err := conn.Query(ctx, `SELECT sha256, seq, data, seq = max(seq) OVER (PARTITION BY sha256) FROM blobs ORDER BY sha256, seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][]byte
	last := ""
	for rows.Next() {
		var sum string
		var seq int
		var data []byte
		var final bool
		if err := rows.Scan(&sum, &seq, &data, &final); err != nil {
			t.Fatal(err)
		}
		if open != nil {
			data = open(sum, seq, final, data)
		}
		if sum != last || out == nil {
			out = append(out, nil)
			last = sum
		}
		out[len(out)-1] = append(out[len(out)-1], data...)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Bytes are chunked: a content of several chunks reads back whole, and the table holds
// it as that many rows.
func TestFileChunks(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshDatabase(t)
	s := openDSN(t, dsn, Options{})
	defer s.Close()
	ctx := context.Background()
	m := meta.Message{Platform: meta.WhatsApp, Channel: "c", ID: "m1", Subject: "u1", Type: "video"}
	f := meta.File{Platform: meta.WhatsApp, Channel: "c", MessageID: "m1", Subject: "u1", Kind: "video", MediaID: "v1"}
	if _, err := s.Commit(ctx, &meta.Batch{Messages: []meta.Message{m}, Files: []meta.File{f}}); err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), (2*store.BlobChunk+100)/16)
	key := store.FileKey{Platform: meta.WhatsApp, MessageID: "m1"}
	if _, err := s.StoreFileBytes(ctx, key, bytes.NewReader(payload), 10*store.BlobChunk, "video/mp4"); err != nil {
		t.Fatal(err)
	}
	var chunks int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM blobs`).Scan(&chunks); err != nil || chunks != 3 {
		t.Fatalf("%d chunks, %v; want 3", chunks, err)
	}
	rc, err := s.OpenFile(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := got.ReadFrom(rc); err != nil || !bytes.Equal(got.Bytes(), payload) {
		t.Fatalf("read back %d bytes, %v; want %d", got.Len(), err, len(payload))
	}
}

// A database from before shared files were fetched gains the queue's columns, and the
// ledger its bytes column; its file records join the queue.
func TestFilesOfEarlierVersionJoinTheQueue(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(storetest.MigratedFilesTable, "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")); err != nil {
		t.Fatal(err)
	}
	for _, f := range storetest.MigratedFiles {
		if _, err := conn.Exec(ctx, `INSERT INTO files(platform, message_id, idx, channel, subject, media_id, doc)
			VALUES ($1::jsonb ->> 'platform', $2, 0, 'c', 'u', $3, $1)`, f.Doc, f.ID, nullableKey(f.MediaID)); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s := openDSN(t, dsn, Options{})
	defer s.Close()
	storetest.CheckFilesMigrated(t, s)
}
