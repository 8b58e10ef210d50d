package sqlite

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// encBackend is the SQLite store for the encryption suite: a location is a data
// directory, its bytes at rest the database, its WAL and the files directory.
func encBackend() storetest.EncBackend {
	return storetest.EncBackend{
		New: func(t *testing.T) string { return t.TempDir() },
		Open: func(t *testing.T, dir string, keys *store.Keys) store.Store {
			s, err := Open(dir, Options{Keys: keys})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Raw: func(t *testing.T, dir string) []byte {
			var out []byte
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				b, err := os.ReadFile(p)
				out = append(out, b...)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			return out
		},
		Copy: func(t *testing.T, dir string) string {
			dst := t.TempDir()
			// The database, its WAL (without the shared-memory index, which SQLite
			// rebuilds from the WAL) and the stored files: a snapshot of the volume.
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(dir, p)
				if d.IsDir() {
					return os.MkdirAll(filepath.Join(dst, rel), 0o700)
				}
				if filepath.Ext(p) == "-shm" || filepath.Base(p) == FileName+"-shm" {
					return nil
				}
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
			})
			if err != nil {
				t.Fatal(err)
			}
			return dst
		},
		Swap: func(t *testing.T, dir, table string) {
			db, err := sql.Open("sqlite", dsn(filepath.Join(dir, FileName), false))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			res, err := db.Exec(`UPDATE ` + table + ` SET doc = (SELECT doc FROM ` + table + ` ORDER BY id LIMIT 1)
				WHERE id = (SELECT id FROM ` + table + ` ORDER BY id DESC LIMIT 1)`)
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("swap %s: %d rows changed", table, n)
			}
		},
		ForgetMessageIDForm: func(t *testing.T, dir string) {
			db, err := sql.Open("sqlite", dsn(filepath.Join(dir, FileName), false))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(`ALTER TABLE encryption DROP COLUMN message_ids`); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func TestEncryption(t *testing.T) {
	storetest.RunEncryption(t, encBackend())
}

// The conformance suites again, with every record sealed and every identifier hashed.
func TestConformanceEncrypted(t *testing.T) {
	for _, o := range []Options{{}, {EraseBatch: 1}} {
		t.Run(fmt.Sprintf("EraseBatch=%d", o.EraseBatch), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				o := o
				o.Keys = storetest.NewKeys(t)
				s, err := Open(t.TempDir(), o)
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}

// The file suite reads every file beneath the store opened with the ring: a sealed
// blob counts as its clear bytes, anything else (a temporary file) as it is.
func TestFilesConformanceEncrypted(t *testing.T) {
	storetest.RunFiles(t, func(t *testing.T) (store.Store, storetest.Stored) {
		dir := t.TempDir()
		keys := storetest.NewKeys(t)
		s := openFiles(t, dir, Options{Keys: keys, EraseBatch: 1})
		return s, func(t *testing.T) [][]byte {
			sl, err := keys.Sealing()
			if err != nil {
				t.Fatal(err)
			}
			var out [][]byte
			for _, b := range filesIn(t, dir) {
				out = append(out, openedBlob(t, sl, b))
			}
			return out
		}
	})
}

// openedBlob is b's clear bytes if b is a sealed blob, else b.
func openedBlob(t *testing.T, sl store.Sealing, b []byte) []byte {
	t.Helper()
	if !bytes.HasPrefix(b, []byte(blobMagic)) {
		return b
	}
	p := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := openBlobOf(p, sl, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	opened, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("open a stored blob: %v", err)
	}
	return opened
}

// resealChildEnv carries the key ring (JSON) to TestResealChildProcess, which runs in
// the data directory as its working directory.
const resealChildEnv = "OMNIFLOW_TEST_RESEAL_CHILD"

// TestResealChildProcess is TestKilledMidReseal's child: it runs the reseal pass one
// record at a time, forever, saying so after the first batches. It does nothing when
// run by itself.
func TestResealChildProcess(t *testing.T) {
	ring := os.Getenv(resealChildEnv)
	if ring == "" {
		t.Skip("run by TestKilledMidReseal")
	}
	var data map[string][]byte
	if err := json.Unmarshal([]byte(ring), &data); err != nil {
		t.Fatal(err)
	}
	s := openFiles(t, ".", Options{Keys: storetest.KeysOf(t, data)})
	for i := 0; ; i++ {
		if _, done, err := s.Reseal(context.Background(), 1); err != nil || done {
			fmt.Printf("reseal: done %v, %v\n", done, err)
			return
		}
		if i == 20 {
			fmt.Println("resealing")
		}
	}
}

// A worker killed (SIGKILL) in the middle of the reseal pass loses nothing: the next
// open reads everything, the pass resumes and completes, and the export is what it
// was before the pass.
func TestKilledMidReseal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openFiles(t, dir, Options{})
	storetest.Populate(t, s, 200)
	before := storetest.Export(t, s, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data := storetest.NewKeyData(t)
	ring, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	killChildWhen(t, dir, "TestResealChildProcess", resealChildEnv+"="+string(ring), "resealing")

	s = openFiles(t, dir, Options{Keys: storetest.KeysOf(t, data)})
	defer s.Close()
	if st, err := s.EncryptionState(context.Background()); err != nil || st.FullyEncrypted() {
		t.Fatalf("after the kill: %+v, %v; want the pass unfinished", st, err)
	}
	if got := storetest.Export(t, s, nil); !reflect.DeepEqual(got, before) {
		t.Fatal("after the kill the store reads differently")
	}
	for {
		_, done, err := s.Reseal(context.Background(), 100)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
	}
	if st, err := s.EncryptionState(context.Background()); err != nil || !st.FullyEncrypted() {
		t.Fatalf("after the resumed pass: %+v, %v", st, err)
	}
	if got := storetest.Export(t, s, nil); !reflect.DeepEqual(got, before) {
		t.Fatal("after the resumed pass the store reads differently")
	}
}

// While a store migrates (records in clear beside hashed ones), retention still
// takes a clear message with its status, file and contact, and an unsend still
// reaches a clear message; the export command (read-only) reads it with the ring.
func TestMixedStoreRetentionUnsendAndReadOnlyExport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	person := func(user, id string, ts time.Time) meta.Batch {
		m := wamsg(id)
		m.Subject, m.Timestamp = user, ts
		return meta.Batch{
			Contacts: []meta.Contact{{Platform: meta.WhatsApp, Channel: "c", Subject: user, WaID: user, Name: "Name of " + user}},
			Messages: []meta.Message{m},
			Statuses: []meta.Status{{Platform: meta.WhatsApp, Channel: "c", MessageID: id, Subject: user, State: "read", Timestamp: ts}},
			Files:    []meta.File{{Platform: meta.WhatsApp, Channel: "c", MessageID: id, Subject: user, Kind: "image", MediaID: "media-" + id}},
		}
	}
	s := openFiles(t, dir, Options{})
	for _, b := range []meta.Batch{person("u-old", "m-old", old), person("u-keep", "m-unsend", time.Now())} {
		if _, err := s.Commit(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data := storetest.NewKeyData(t)
	s = openFiles(t, dir, Options{Keys: storetest.KeysOf(t, data)})
	young := person("u-new", "m-new", time.Now())
	if _, err := s.Commit(ctx, &young); err != nil {
		t.Fatal(err)
	}
	res, err := s.Prune(ctx, store.PruneRequest{Before: time.Now().Add(-time.Hour), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Messages != 1 || res.Counts.Statuses != 1 || res.Counts.Files != 1 || res.Counts.Contacts != 1 {
		t.Errorf("prune of a clear message in a mixed store: %+v, want 1 message, status, file and contact", res.Counts)
	}
	unsend := meta.Batch{Deletions: []meta.Deletion{{Platform: meta.WhatsApp, Channel: "c", MessageID: "m-unsend"}}}
	if r, err := s.Commit(ctx, &unsend); err != nil || r.MessagesDeleted != 1 {
		t.Fatalf("unsend of a clear message: %+v, %v", r, err)
	}
	redelivered := person("u-keep", "m-unsend", time.Now())
	if r, err := s.Commit(ctx, &redelivered); err != nil || r.MessagesNew != 0 {
		t.Fatalf("redelivery of an unsent clear message: %+v, %v; want it kept out", r, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(dir, Options{ReadOnly: true, Keys: storetest.KeysOf(t, data)})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	d := storetest.Export(t, ro, nil)
	if len(d.Messages) != 1 || d.Messages[0].ID != "m-new" || len(d.Contacts) != 2 {
		t.Errorf("export after retention and unsend: %d messages, %d contacts; want m-new and the contacts of u-new and u-keep", len(d.Messages), len(d.Contacts))
	}
	if got := storetest.Export(t, ro, &store.Subject{ID: "u-keep"}); len(got.Contacts) != 1 || len(got.Messages) != 0 {
		t.Errorf("export of a clear-stored subject from a read-only store: %+v", got)
	}
}

// swapSource is a datakey.Source whose ring a test replaces, as the worker's Secret
// watch does on a rotation.
type swapSource struct{ r atomic.Pointer[datakey.Ring] }

func (s *swapSource) Ring() (*datakey.Ring, error)  { return s.r.Load(), nil }
func (s *swapSource) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// A rotation in the middle of a pass restarts it toward the new version: when it
// completes, everything is under the new version, which alone reads it all.
func TestRotationMidPassRestartsTowardTheNewVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s := openFiles(t, dir, Options{})
	storetest.Populate(t, s, 30)
	before := storetest.Export(t, s, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	v1 := storetest.NewKeyData(t)
	parse := func(data map[string][]byte) *datakey.Ring {
		r, err := datakey.Parse(data, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	src := &swapSource{}
	src.r.Store(parse(v1))
	s = openFiles(t, dir, Options{Keys: store.NewKeys(src)})
	for range 5 {
		if _, done, err := s.Reseal(ctx, 10); err != nil || done {
			t.Fatalf("Reseal: done %v, %v", done, err)
		}
	}
	v2, _, err := datakey.Rotate(v1, rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	src.r.Store(parse(v2))
	for {
		_, done, err := s.Reseal(ctx, 50)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
	}
	if st, err := s.EncryptionState(ctx); err != nil || st.SealedVersion != 2 || !st.FullyEncrypted() {
		t.Fatalf("after the pass: %+v, %v; want sealed under version 2", st, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	delete(v2, datakey.KeyPrefix+"1")
	s = openFiles(t, dir, Options{Keys: storetest.KeysOf(t, v2)})
	defer s.Close()
	if got := storetest.Export(t, s, nil); !reflect.DeepEqual(got, before) {
		t.Fatal("under version 2 alone the store reads differently")
	}
}

// A store migrated from clear keeps no clear remnant anywhere in its files: not in
// the unused space of pages that split or moved while the pass rewrote their rows,
// nor in the WAL frames the pass wrote. The store counts as fully encrypted only
// once the file has been rewritten, and a pass cut short before that rewrite
// finishes it on the next call.
func TestMigratedStoreLeavesNoClearRemnant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	// Enough rows, of growing size, that pages split while they are written and again
	// while the pass rewrites them larger (sealed documents are longer).
	var texts []string
	s := migrated(t, dir, 400, 50, func(i int, m *meta.Message) {
		m.ID = fmt.Sprintf("m-remnant-%03d", i)
		m.Subject = fmt.Sprintf("u-remnant-%03d", i%37)
		m.Text = fmt.Sprintf("remnant-text-%03d %s", i, bytes.Repeat([]byte("x"), i%150))
		texts = append(texts, fmt.Sprintf("remnant-text-%03d", i))
	})
	st, err := s.EncryptionState(ctx)
	if err != nil || !st.FullyEncrypted() {
		t.Fatalf("after the pass: %+v, %v; want fully encrypted", st, err)
	}
	// Taken while the store is open, as a volume snapshot would be.
	raw := encBackend().Raw(t, dir)
	for _, txt := range texts {
		if bytes.Contains(raw, []byte(txt)) {
			t.Fatalf("the migrated store's files still hold %q in clear", txt)
		}
	}
	if bytes.Contains(raw, []byte("m-remnant-")) || bytes.Contains(raw, []byte("u-remnant-")) {
		t.Fatal("the migrated store's files still hold a clear identifier")
	}
	if d := storetest.Export(t, s, nil); len(d.Messages) != len(texts) {
		t.Errorf("export after the compaction: %d messages, want %d", len(d.Messages), len(texts))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// A pass that sealed everything but was stopped before the file was rewritten is not
// fully encrypted, and the next Reseal rewrites it.
func TestCompactionPendingIsFinishedByTheNextReseal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	data := storetest.NewKeyData(t)
	// Seal everything, then put the state back to "compaction pending", as a crash
	// between the last batch and the rewrite leaves it.
	s := migratedWith(t, dir, data, 50, 1000, func(i int, m *meta.Message) {
		m.ID = fmt.Sprintf("m-pending-%02d", i)
		m.Text = fmt.Sprintf("pending-text-%02d", i)
	})
	if err := s.submit(ctx, func(ctx context.Context, t *txn) error {
		_, err := t.tx.ExecContext(ctx, `UPDATE encryption SET compact = 1`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.EncryptionState(ctx); err != nil || st.FullyEncrypted() {
		t.Fatalf("with the rewrite pending: %+v, %v; want not fully encrypted", st, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openFiles(t, dir, Options{Keys: storetest.KeysOf(t, data)})
	defer s.Close()
	if _, done, err := s.Reseal(ctx, 10); err != nil || !done {
		t.Fatalf("Reseal with the rewrite pending: done %v, %v", done, err)
	}
	if st, err := s.EncryptionState(ctx); err != nil || !st.FullyEncrypted() {
		t.Fatalf("after the rewrite: %+v, %v; want fully encrypted", st, err)
	}
	var compact bool
	if err := s.r.QueryRow(`SELECT compact FROM encryption`).Scan(&compact); err != nil || compact {
		t.Fatalf("compact flag after the rewrite: %v, %v", compact, err)
	}
}

// A sealed store keeps its documents as BLOBs (the sealed bytes, not their base64), and
// a document sealed as text, as stores before that wrote them, still opens and exports
// alike.
func TestSealedDocumentsAreBytesAndTextFormsStillOpen(t *testing.T) {
	t.Parallel()
	dir, keys := t.TempDir(), storetest.NewKeys(t)
	s, err := Open(dir, Options{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := wamsg("wamid.blob")
	m.Subject, m.Text = "15550101010", "Hola, soy Ana"
	bt := meta.Batch{
		Contacts: []meta.Contact{{Platform: meta.WhatsApp, Channel: "c", Subject: m.Subject, WaID: m.Subject, Name: "Ana"}},
		Messages: []meta.Message{m},
		Statuses: []meta.Status{{Platform: meta.WhatsApp, Channel: "c", MessageID: "wamid.out", Subject: m.Subject, State: "read"}},
	}
	if _, err := s.Commit(context.Background(), &bt); err != nil {
		t.Fatal(err)
	}
	before := storetest.Export(t, s, nil)
	db, err := sql.Open("sqlite", dsn(filepath.Join(dir, FileName), false))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, table := range []string{"contacts", "messages", "statuses"} {
		var typ string
		if err := db.QueryRow(tableSQL("SELECT typeof(doc) FROM %s", table)).Scan(&typ); err != nil || typ != "blob" {
			t.Fatalf("%s.doc is %q (%v), want blob", table, typ, err)
		}
	}
	// The message's document as the text form.
	var id int64
	var platform, msgID, stored string
	if err := db.QueryRow("SELECT id, platform, message_id, doc FROM messages").Scan(&id, &platform, &msgID, &stored); err != nil {
		t.Fatal(err)
	}
	sl, err := keys.Sealing()
	if err != nil {
		t.Fatal(err)
	}
	plain, err := sl.OpenDoc(stored, "messages", platform, msgID)
	if err != nil {
		t.Fatal(err)
	}
	text, err := sl.SealDoc(plain, "messages", platform, msgID)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) >= len(text) {
		t.Fatalf("bytes form %d bytes, text form %d: the bytes form should be smaller", len(stored), len(text))
	}
	var typ string
	if _, err := db.Exec("UPDATE messages SET doc = ? WHERE id = ?", text, id); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT typeof(doc) FROM messages WHERE id = ?", id).Scan(&typ); err != nil || typ != "text" {
		t.Fatalf("messages.doc is %q (%v) after the update, want text", typ, err)
	}
	if after := storetest.Export(t, s, nil); !reflect.DeepEqual(before, after) {
		t.Fatalf("export after the document went back to text:\n%+v\nwant\n%+v", after, before)
	}
}

// migrated fills a store in clear with n messages (shaped by set), reopens it with a
// new key and runs the pass to its end in batches of batch: a store migrated from clear.
func migrated(t *testing.T, dir string, n, batch int, set func(int, *meta.Message)) *Store {
	return migratedWith(t, dir, storetest.NewKeyData(t), n, batch, set)
}

func migratedWith(t *testing.T, dir string, data map[string][]byte, n, batch int, set func(int, *meta.Message)) *Store {
	t.Helper()
	ctx := context.Background()
	s := openFiles(t, dir, Options{})
	for i := range n {
		m := wamsg("")
		set(i, &m)
		if _, err := s.Commit(ctx, &meta.Batch{Messages: []meta.Message{m}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openFiles(t, dir, Options{Keys: storetest.KeysOf(t, data)})
	for {
		_, done, err := s.Reseal(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			return s
		}
	}
}
