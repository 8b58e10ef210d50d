package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/docenc"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// The conformance suites hold with encryption on: sealing and hashing change nothing
// a caller sees.
func TestConformanceEncrypted(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openDSN(t, pgtest.FreshDatabase(t), Options{Keys: storetest.NewKeys(t)})
	})
}

// The file suite's view beneath the store opens the sealed chunks with the tenant's
// ring: it checks which contents are held, and sealed ones are held too.
func TestFilesConformanceEncrypted(t *testing.T) {
	storetest.RunFiles(t, func(t *testing.T) (store.Store, storetest.Stored) {
		dsn := pgtest.FreshDatabase(t)
		keys := storetest.NewKeys(t)
		return openDSN(t, dsn, Options{Keys: keys}), func(t *testing.T) [][]byte { return openedBlobs(t, dsn, keys) }
	})
}

// openedBlobs is rawBlobs with every sealed chunk opened: each content's chunks under
// its address (the last one last), a temporary key's as writeChunks sealed them.
func openedBlobs(t *testing.T, dsn string, keys *store.Keys) [][]byte {
	t.Helper()
	sl, err := keys.Sealing()
	if err != nil {
		t.Fatal(err)
	}
	return readBlobs(t, dsn, func(addr string, seq int, last bool, data []byte) []byte {
		tmp := strings.HasPrefix(addr, "tmp-")
		if !store.IsHashedID(addr) && !tmp {
			t.Errorf("content address %q is not a keyed hash", addr)
		}
		plain, err := sl.OpenBytes(data, addr, seq, last && !tmp)
		if err != nil {
			t.Fatalf("open chunk %d of %s: %v", seq, addr, err)
		}
		return plain
	})
}

// The encryption suite on PostgreSQL: a location is a database's DSN. Raw is what
// pg_dump prints of it (the binary of the PostgreSQL install hack/setup-postgres.sh
// uses, with bytea printed as its bytes, so that file bytes in clear would show as
// text), or, where no pg_dump is installed, every table through COPY ... TO STDOUT.
// Copy is CREATE DATABASE ... TEMPLATE, after ending the connections of a store still
// open on it (a copy of a running store, as a base backup is).
func TestEncryption(t *testing.T) {
	storetest.RunEncryption(t, storetest.EncBackend{
		New: func(t *testing.T) string { return pgtest.FreshDatabase(t) },
		Open: func(t *testing.T, dsn string, keys *store.Keys) store.Store {
			return openDSN(t, dsn, Options{Keys: keys})
		},
		Raw:  dumpDatabase,
		Copy: copyDatabase,
		Swap: swapDocs,
		ForgetMessageIDForm: func(t *testing.T, dsn string) {
			if _, err := connect(t, dsn).Exec(context.Background(), `ALTER TABLE encryption_state DROP COLUMN message_ids`); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// pgDump is the newest pg_dump of the Debian layout hack/setup-postgres.sh uses, or "".
func pgDump() string {
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump")
	if len(found) == 0 {
		return ""
	}
	sort.Slice(found, func(i, j int) bool { return versionOfBin(found[i]) < versionOfBin(found[j]) })
	return found[len(found)-1]
}

func versionOfBin(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

func dumpDatabase(t *testing.T, dsn string) []byte {
	t.Helper()
	if bin := pgDump(); bin != "" {
		cmd := exec.Command(bin, "--dbname", dsn)
		cmd.Env = append(os.Environ(), "PGOPTIONS=-c bytea_output=escape")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("pg_dump: %v", err)
		}
		return out
	}
	return copyTables(t, dsn)
}

// copyTables is every table of the database through COPY ... TO STDOUT.
func copyTables(t *testing.T, dsn string) []byte {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, dsn)
	if _, err := conn.Exec(ctx, "SET bytea_output = escape"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, tb := range tables {
		if _, err := conn.PgConn().CopyTo(ctx, &out, "COPY "+pgx.Identifier{tb}.Sanitize()+" TO STDOUT"); err != nil {
			t.Fatalf("copy %s: %v", tb, err)
		}
	}
	return out.Bytes()
}

func databaseName(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

// copyDatabase copies the database of dsn to a new one, dropped when the test ends.
func copyDatabase(t *testing.T, dsn string) string {
	t.Helper()
	ctx := context.Background()
	admin := pgtest.ServerDSN(t)
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx) //nolint:errcheck // a test's connection
	src := databaseName(t, dsn)
	dst := src + "_c" + strconv.Itoa(int(copies.Add(1)))
	for attempt := 0; ; attempt++ {
		// A template may have no other connection: those of a store still open end
		// (it sees them as a server restart would show).
		if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, src); err != nil {
			t.Fatal(err)
		}
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{dst}.Sanitize()+" TEMPLATE "+pgx.Identifier{src}.Sanitize())
		if err == nil {
			break
		}
		if attempt == 20 {
			t.Fatalf("copy database: %v", err)
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop copy %s: %v", dst, err)
			return
		}
		defer conn.Close(ctx) //nolint:errcheck // a test's connection
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{dst}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop copy %s: %v", dst, err)
		}
	})
	return pgtest.WithDatabase(t, admin, dst)
}

var copies atomic.Int32

// swapDocs writes the document of the table's first row over its last row's.
func swapDocs(t *testing.T, dsn, table string) {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, dsn)
	tb := pgx.Identifier{table}.Sanitize()
	ct, err := conn.Exec(ctx, "UPDATE "+tb+" SET doc = (SELECT doc FROM "+tb+" ORDER BY id LIMIT 1) WHERE id = (SELECT max(id) FROM "+tb+")")
	if err != nil || ct.RowsAffected() != 1 {
		t.Fatalf("swap %s documents: %v, %d rows", table, err, ct.RowsAffected())
	}
}

// populateClear fills a clear store at dsn with people's records, a deletion (a
// tombstone) and a file's bytes, and returns its whole export.
func populateClear(t *testing.T, dsn string, people int) storetest.Dump {
	t.Helper()
	s := openDSN(t, dsn, Options{})
	defer s.Close()
	storetest.Populate(t, s, people)
	ctx := context.Background()
	m := meta.Message{Platform: meta.WhatsApp, Channel: "c", ID: "m-file", Subject: "u-file", Type: "image", Text: "a photo"}
	f := meta.File{Platform: meta.WhatsApp, Channel: "c", MessageID: "m-file", Subject: "u-file", Kind: "image", MediaID: "media-1"}
	commit(t, s, meta.Batch{Messages: []meta.Message{m}, Files: []meta.File{f}})
	commit(t, s, meta.Batch{Deletions: []meta.Deletion{{Platform: meta.WhatsApp, Channel: "c", MessageID: "m-unsent"}}})
	payload := bytes.Repeat([]byte("clear file bytes "), 70_000) // two chunks
	if _, err := s.StoreFileBytes(ctx, store.FileKey{Platform: meta.WhatsApp, MessageID: "m-file"}, bytes.NewReader(payload), 4<<20, ""); err != nil {
		t.Fatal(err)
	}
	return storetest.Export(t, s, nil)
}

// rowsAtRest counts the rows the pass has to change in a clear store: every row of
// every table that holds a document or an identifier.
func rowsAtRest(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM contacts) + (SELECT count(*) FROM messages)
		+ (SELECT count(*) FROM statuses) + (SELECT count(*) FROM receipts) + (SELECT count(*) FROM files)
		+ (SELECT count(*) FROM identity_changes) + (SELECT count(*) FROM leads) + (SELECT count(*) FROM tombstones)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// clearLeft counts what is still in clear: documents, identifiers, file contents.
func clearLeft(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM contacts WHERE doc NOT LIKE '~1:%' OR subject NOT LIKE 'h:%')
		+ (SELECT count(*) FROM messages WHERE doc NOT LIKE '~1:%' OR message_id NOT LIKE 'h:%' OR subject NOT LIKE 'h:%')
		+ (SELECT count(*) FROM statuses WHERE doc NOT LIKE '~1:%' OR message_id NOT LIKE 'h:%')
		+ (SELECT count(*) FROM receipts WHERE doc NOT LIKE '~1:%' OR subject NOT LIKE 'h:%')
		+ (SELECT count(*) FROM files WHERE doc NOT LIKE '~1:%' OR message_id NOT LIKE 'h:%' OR sha256 NOT LIKE 'h:%')
		+ (SELECT count(*) FROM identity_changes WHERE doc NOT LIKE '~1:%' OR message_id NOT LIKE 'h:%')
		+ (SELECT count(*) FROM leads WHERE doc NOT LIKE '~1:%' OR lead_id NOT LIKE 'h:%')
		+ (SELECT count(*) FROM tombstones WHERE message_id NOT LIKE 'h:%')
		+ (SELECT count(*) FROM blobs WHERE sha256 NOT LIKE 'h:%')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Two replicas running the pass at once on one database take turns: between them they
// change every record exactly once (a document sealed twice would not open, and would
// count twice), neither deadlocks, and both then see the store fully encrypted.
func TestConcurrentResealCompletesOnce(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshDatabase(t)
	before := populateClear(t, dsn, 25)
	keys := storetest.NewKeys(t)
	a, b := openDSN(t, dsn, Options{Keys: keys}), openDSN(t, dsn, Options{Keys: keys})
	defer a.Close()
	defer b.Close()
	want := rowsAtRest(t, a)
	if clearLeft(t, a) == 0 {
		t.Fatal("the clear store holds nothing in clear")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var changed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, done, err := s.Reseal(ctx, 7)
				changed.Add(int64(n))
				if err != nil || done {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Reseal: %v", err)
		}
	}
	if got := changed.Load(); got != int64(want) {
		t.Errorf("the two passes changed %d records, want each of the %d once", got, want)
	}
	if n := clearLeft(t, a); n != 0 {
		t.Errorf("%d rows still hold something in clear", n)
	}
	for _, s := range []*Store{a, b} {
		st, err := s.EncryptionState(ctx)
		if err != nil || !st.FullyEncrypted() {
			t.Errorf("EncryptionState: %+v, %v; want fully encrypted", st, err)
		}
		if n, done, err := s.Reseal(ctx, 100); n != 0 || !done || err != nil {
			t.Errorf("Reseal after the pass: %d, %v, %v; want nothing to do", n, done, err)
		}
	}
	if got := storetest.Export(t, b, nil); !reflect.DeepEqual(got, before) {
		t.Errorf("after the pass the store reads differently:\n%+v\nwant\n%+v", got, before)
	}
}

// A rotation in the middle of a pass restarts it toward the new version: once it is
// done, a ring holding only the new version reads everything, including what the
// interrupted pass had sealed under the old one.
func TestRotationMidPassRestarts(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshDatabase(t)
	before := populateClear(t, dsn, 5)
	ctx := context.Background()
	v1 := storetest.NewKeyData(t)
	s := openDSN(t, dsn, Options{Keys: storetest.KeysOf(t, v1)})
	for range 3 {
		if _, done, err := s.Reseal(ctx, 4); err != nil || done {
			t.Fatalf("Reseal: done %v, %v; want part of the pass", done, err)
		}
	}
	s.Close()
	v2, _, err := datakey.Rotate(v1, rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	s = openDSN(t, dsn, Options{Keys: storetest.KeysOf(t, v2)})
	if st, err := s.EncryptionState(ctx); err != nil || st.ActiveVersion != 2 || st.SealedVersion != 0 {
		t.Errorf("mid-pass after the rotation: %+v, %v; want active 2, nothing sealed", st, err)
	}
	for done := false; !done; {
		if _, done, err = s.Reseal(ctx, 4); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := s.EncryptionState(ctx); err != nil || st.SealedVersion != 2 || !st.FullyEncrypted() {
		t.Errorf("after the pass: %+v, %v; want sealed under 2", st, err)
	}
	s.Close()
	only2 := maps.Clone(v2)
	delete(only2, datakey.KeyPrefix+"1")
	s = openDSN(t, dsn, Options{Keys: storetest.KeysOf(t, only2)})
	defer s.Close()
	if got := storetest.Export(t, s, nil); !reflect.DeepEqual(got, before) {
		t.Errorf("under version 2 alone the store reads differently:\n%+v\nwant\n%+v", got, before)
	}
	rc, err := s.OpenFile(ctx, store.FileKey{Platform: meta.WhatsApp, MessageID: "m-file"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, err := io.ReadAll(rc); err != nil || !bytes.HasPrefix(got, []byte("clear file bytes")) {
		t.Errorf("OpenFile under version 2 alone: %d bytes, %v", len(got), err)
	}
}

// A store that held records in clear keeps working while the pass is under way: a
// file queued in clear is claimed and stored under Keys (its content hash sealed
// under the key the record keeps once hashed), retention in the middle of the pass
// takes a person's statuses and contact along with the messages, and the pass then
// leaves a store that reads whole.
func TestMixedStoreFetchesAndPrunes(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshDatabase(t)
	ctx := context.Background()
	person := func(id string, at time.Time, file bool) meta.Batch {
		b := meta.Batch{
			Contacts: []meta.Contact{{Platform: meta.WhatsApp, Channel: "c", Subject: id, WaID: id, Name: "Name " + id}},
			Messages: []meta.Message{{Platform: meta.WhatsApp, Channel: "c", ID: "m-" + id, Subject: id, Type: "image", Timestamp: at}},
			Statuses: []meta.Status{{Platform: meta.WhatsApp, Channel: "c", MessageID: "out-" + id, Subject: id, State: "read", Timestamp: at}},
		}
		if file {
			b.Files = []meta.File{{Platform: meta.WhatsApp, Channel: "c", MessageID: "m-" + id, Subject: id, Kind: "image", MediaID: "media-" + id}}
		}
		return b
	}
	s := openDSN(t, dsn, Options{})
	commit(t, s, person("kept", time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC), true))
	commit(t, s, person("aged", time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC), false))
	s.Close()

	s = openDSN(t, dsn, Options{Keys: storetest.NewKeys(t)})
	defer s.Close()
	jobs, err := s.ClaimFetches(ctx, time.Now(), 10, time.Minute)
	if err != nil || len(jobs) != 1 || jobs[0].Key.MessageID != "m-kept" {
		t.Fatalf("ClaimFetches: %+v, %v; want the clear-stored file", jobs, err)
	}
	payload := []byte("bytes fetched under Keys for a record stored in clear")
	sb, err := s.StoreFileBytes(ctx, jobs[0].Key, bytes.NewReader(payload), 1<<20, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	if _, done, err := s.Reseal(ctx, 1); err != nil || done {
		t.Fatalf("Reseal: done %v, %v; want part of the pass", done, err)
	}
	pruned, err := s.Prune(ctx, store.PruneRequest{Before: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if pruned.Counts.Messages != 1 || pruned.Counts.Statuses != 1 || pruned.Counts.Contacts != 1 {
		t.Errorf("Prune mid-pass: %+v, want the aged person's message, status and contact", pruned.Counts)
	}
	for done := false; !done; {
		if _, done, err = s.Reseal(ctx, 2); err != nil {
			t.Fatal(err)
		}
	}
	if n := clearLeft(t, s); n != 0 {
		t.Errorf("%d rows still hold something in clear", n)
	}
	var files []store.FileRecord
	d := storetest.Export(t, s, nil)
	err = s.Export(ctx, store.Filter{}, func(r store.Record) error {
		if r.Kind != store.KindFile {
			return nil
		}
		var f store.FileRecord
		files = append(files, f)
		return r.Decode(&files[len(files)-1])
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Messages) != 1 || d.Messages[0].ID != "m-kept" || len(d.Contacts) != 1 || len(d.Statuses) != 1 {
		t.Errorf("after the pass: %d messages, %d contacts, %d statuses; want the kept person's", len(d.Messages), len(d.Contacts), len(d.Statuses))
	}
	if len(files) != 1 || files[0].StoredSHA256 != sb.SHA256 || files[0].State != store.FileFetched {
		t.Errorf("exported files %+v, want the fetched file with sha256 %s", files, sb.SHA256)
	}
	rc, err := s.OpenFile(ctx, jobs[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, payload) {
		t.Errorf("OpenFile: %q, %v", got, err)
	}
}

// A store once opened with Keys is never written in clear: opened without them (a
// worker misconfigured), a delivery fails with ErrKeyUnavailable and stores nothing.
func TestEncryptedStoreRefusesClearWrites(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshDatabase(t)
	s := openDSN(t, dsn, Options{Keys: storetest.NewKeys(t)})
	commit(t, s, meta.Batch{Messages: []meta.Message{wamsg("m1", "u1")}})
	s.Close()
	s = openDSN(t, dsn, Options{})
	defer s.Close()
	b := meta.Batch{Messages: []meta.Message{wamsg("m2", "u2")}}
	if _, err := s.Commit(context.Background(), &b); !errors.Is(err, store.ErrKeyUnavailable) {
		t.Errorf("Commit without Keys: %v, want ErrKeyUnavailable", err)
	}
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM messages`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d messages stored, %v; want only the sealed one", n, err)
	}
}

// During a rolling update a worker without Keys (an older one) may write a record in
// clear beside its hashed twin. Deliveries naming it keep working (the clear twin is
// not moved onto the hashed key), and the pass deletes the twin rather than stop on it.
func TestClearTwinOfAHashedRecord(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshDatabase(t)
	ctx := context.Background()
	status := func(state string) meta.Status {
		return meta.Status{Platform: meta.WhatsApp, Channel: "c", MessageID: "out-1", Subject: "u1", State: state, Timestamp: t0}
	}
	s := openDSN(t, dsn, Options{})
	commit(t, s, meta.Batch{Messages: []meta.Message{wamsg("m1", "u1")}, Statuses: []meta.Status{status(meta.StateSent)}})
	s.Close()
	s = openDSN(t, dsn, Options{Keys: storetest.NewKeys(t)})
	defer s.Close()
	commit(t, s, meta.Batch{Messages: []meta.Message{wamsg("m1", "u1")}, Statuses: []meta.Status{status(meta.StateDelivered)}})
	// The older worker's writes, beneath the store: a status and a redelivered message
	// under their clear keys.
	st := status(meta.StateSent)
	d, err := docenc.Encode(&st)
	if err != nil {
		t.Fatal(err)
	}
	m := wamsg("m1", "u1")
	md, err := docenc.Encode(&m)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO statuses(platform, message_id, channel, subject, rank, doc) VALUES ('WhatsApp', 'out-1', 'c', 'u1', 1, $1)`, []any{string(d)}},
		{`INSERT INTO messages(platform, message_id, channel, subject, doc) VALUES ('WhatsApp', 'm1', 'acme', 'u1', $1)`, []any{string(md)}},
	} {
		if _, err := s.pool.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	res := commit(t, s, meta.Batch{Messages: []meta.Message{wamsg("m1", "u1")}, Statuses: []meta.Status{status(meta.StateRead)}})
	if res.MessagesDuplicate != 1 || res.StatusesApplied != 1 {
		t.Errorf("delivery beside the clear twins: %+v, want the message a duplicate and the status applied", res)
	}
	for done := false; !done; {
		if _, done, err = s.Reseal(ctx, 3); err != nil {
			t.Fatalf("Reseal: %v", err)
		}
	}
	if n := clearLeft(t, s); n != 0 {
		t.Errorf("%d rows still hold something in clear", n)
	}
	got := storetest.Export(t, s, nil)
	if len(got.Messages) != 1 || len(got.Statuses) != 1 || got.Statuses[0].State != meta.StateRead {
		t.Errorf("after the pass: %d messages, statuses %+v; want one message and the read status", len(got.Messages), got.Statuses)
	}
}
