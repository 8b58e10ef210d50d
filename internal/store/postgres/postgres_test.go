package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

func TestMain(m *testing.M) {
	if err := pgtest.CheckServer(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func openDSN(t testing.TB, dsn string, opts Options) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openDSN(t, pgtest.FreshDatabase(t), Options{})
	})
}

// A session whose commits return before they are flushed is refused, however it got
// that setting: here from the DSN, as a misconfigured Secret would carry it.
func TestRefusesAsynchronousCommit(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshDatabase(t)
	for _, level := range []string{"off", "local", "remote_write"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s, err := Open(ctx, pgtest.WithOption(t, dsn, "-c synchronous_commit="+level), Options{})
		cancel()
		if err == nil {
			s.Close()
			t.Errorf("Open with synchronous_commit=%s succeeded", level)
			continue
		}
		if !strings.Contains(err.Error(), "synchronous_commit") || !strings.Contains(err.Error(), level) {
			t.Errorf("synchronous_commit=%s: error does not say why: %v", level, err)
		}
	}
	// Stronger than on is accepted (without standbys it behaves as on).
	s := openDSN(t, pgtest.WithOption(t, dsn, "-c synchronous_commit=remote_apply"), Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDurableSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sync, fsync string
		ok          bool
	}{
		{"on", "on", true}, {"remote_apply", "on", true},
		{"off", "on", false}, {"local", "on", false}, {"remote_write", "on", false}, {"on", "off", false},
	} {
		if err := durable(tc.sync, tc.fsync); (err == nil) != tc.ok {
			t.Errorf("durable(%s, %s) = %v, want ok=%v", tc.sync, tc.fsync, err, tc.ok)
		}
	}
}

var t0 = time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)

func wamsg(id, subject string) meta.Message {
	return meta.Message{Platform: meta.WhatsApp, Channel: "acme", ID: id, Subject: subject, Direction: meta.Inbound, Type: "text",
		Text: "text of " + id, Timestamp: t0, Raw: json.RawMessage(`{"id":"` + id + `"}`)}
}

func commit(t testing.TB, s store.Store, b meta.Batch) store.CommitResult {
	t.Helper()
	res, err := s.Commit(context.Background(), &b)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return res
}

// Two worker replicas (two stores, two pools, one database) commit the same person and
// the same messages at once, in the three shapes WhatsApp sends a person in: one contact
// and every message once is what is left.
func TestReplicasCommitTheSamePerson(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshDatabase(t)
	a := openDSN(t, dsn, Options{})
	b := openDSN(t, dsn, Options{}) // its schema creation races nothing: a's is done, and it locks anyway
	defer a.Close()
	defer b.Close()

	const wa, bsuid = "15555550142", "US.13491208655302741918"
	shapes := []meta.Contact{
		{Platform: meta.WhatsApp, Channel: "acme", Subject: wa, WaID: wa, Name: "Ana"},
		{Platform: meta.WhatsApp, Channel: "acme", Subject: bsuid, UserID: bsuid, Name: "Ana", Username: "ana.s"},
		{Platform: meta.WhatsApp, Channel: "acme", Subject: bsuid, WaID: wa, UserID: bsuid, Name: "Ana"},
	}
	const messages, perStore = 10, 24
	var mu sync.Mutex
	var total store.CommitResult
	var wg sync.WaitGroup
	for i := range 2 * perStore {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := shapes[i%len(shapes)]
			batch := meta.Batch{Contacts: []meta.Contact{c}}
			for m := range messages {
				// Every commit carries every message, in an order of its own.
				id := fmt.Sprintf("wamid.%d", (m+i)%messages)
				batch.Messages = append(batch.Messages, wamsg(id, c.Subject))
				batch.Statuses = append(batch.Statuses, meta.Status{Platform: meta.WhatsApp, Channel: "acme", MessageID: "out-" + id,
					Subject: c.Subject, State: []string{meta.StateSent, meta.StateDelivered, meta.StateRead}[i%3], Timestamp: t0})
			}
			res, err := st.Commit(context.Background(), &batch)
			if err != nil {
				t.Errorf("Commit: %v", err)
				return
			}
			mu.Lock()
			total.Add(res)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	d := storetest.Export(t, a, nil)
	want := []meta.Contact{{Platform: meta.WhatsApp, Channel: "acme", Subject: bsuid, WaID: wa, UserID: bsuid, Name: "Ana", Username: "ana.s"}}
	if !reflect.DeepEqual(d.Contacts, want) {
		t.Errorf("contacts %+v, want %+v", d.Contacts, want)
	}
	seen := map[string]bool{}
	for _, m := range d.Messages {
		if seen[m.ID] {
			t.Errorf("message %s stored twice", m.ID)
		}
		seen[m.ID] = true
	}
	if len(seen) != messages || total.MessagesNew != messages || total.MessagesDuplicate != 2*perStore*messages-messages {
		t.Errorf("%d distinct messages stored, results %+v; want %d new", len(seen), total, messages)
	}
	if len(d.Statuses) != messages {
		t.Errorf("%d statuses, want %d", len(d.Statuses), messages)
	}
	for _, st := range d.Statuses {
		if st.State != meta.StateRead {
			t.Errorf("status of %s is %s, want the furthest (read)", st.MessageID, st.State)
		}
	}
}

// A linked person seen by phone number on one replica and by business-scoped id on the
// other at once: both rewrite the same row, and neither may do so from a stale read. The
// one delivery that brings the parent id must leave it stored, whatever the concurrent
// renames did.
func TestReplicasMergeWithoutLosingFacts(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshDatabase(t)
	a := openDSN(t, dsn, Options{})
	b := openDSN(t, dsn, Options{})
	defer a.Close()
	defer b.Close()
	const people, renames = 6, 12
	var wg sync.WaitGroup
	for p := range people {
		wa, bsuid := fmt.Sprintf("1555555%04d", p), fmt.Sprintf("US.%d", p)
		commit(t, a, meta.Batch{Contacts: []meta.Contact{{Platform: meta.WhatsApp, Channel: "acme", Subject: bsuid, WaID: wa, UserID: bsuid, Name: "Ana"}}})
		for r := range renames {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := []store.Store{a, b}[r%2]
				c := meta.Contact{Platform: meta.WhatsApp, Channel: "acme", Subject: bsuid, UserID: bsuid, Name: fmt.Sprintf("Ana %d", r)}
				if r == renames/2 { // the one that brings the parent id, by phone number only
					c = meta.Contact{Platform: meta.WhatsApp, Channel: "acme", Subject: wa, WaID: wa, ParentUserID: "US.P" + fmt.Sprint(p)}
				}
				if _, err := st.Commit(context.Background(), &meta.Batch{Contacts: []meta.Contact{c}}); err != nil {
					t.Errorf("Commit: %v", err)
				}
			}()
		}
	}
	wg.Wait()
	d := storetest.Export(t, a, nil)
	if len(d.Contacts) != people {
		t.Fatalf("%d contacts, want %d", len(d.Contacts), people)
	}
	for _, c := range d.Contacts {
		if c.ParentUserID == "" || c.WaID == "" || c.UserID != c.Subject {
			t.Errorf("contact %+v lost a fact", c)
		}
	}
}

// An unsend that reaches one replica while the message itself reaches another must win
// whichever commits first: the message ends deleted, never resurrected.
func TestMessageRacesItsDeletion(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshDatabase(t)
	a := openDSN(t, dsn, Options{})
	b := openDSN(t, dsn, Options{})
	defer a.Close()
	defer b.Close()
	const n = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total store.CommitResult
	run := func(s store.Store, batch meta.Batch) {
		defer wg.Done()
		res, err := s.Commit(context.Background(), &batch)
		if err != nil {
			t.Errorf("Commit: %v", err)
			return
		}
		mu.Lock()
		total.Add(res)
		mu.Unlock()
	}
	for i := range n {
		m := wamsg(fmt.Sprintf("ig.%d", i), "igsid")
		m.Platform, m.Channel = meta.Instagram, "ig"
		file := meta.File{Platform: meta.Instagram, Channel: "ig", MessageID: m.ID, Subject: "igsid", Kind: "image", URL: "https://x"}
		del := meta.Deletion{Platform: meta.Instagram, Channel: "ig", MessageID: m.ID, Timestamp: t0}
		wg.Add(2)
		go run(a, meta.Batch{Messages: []meta.Message{m}, Files: []meta.File{file}})
		go run(b, meta.Batch{Deletions: []meta.Deletion{del}})
	}
	wg.Wait()
	d := storetest.Export(t, a, nil)
	if len(d.Messages) != 0 || len(d.Files) != 0 {
		t.Fatalf("%d messages and %d files survived their deletion", len(d.Messages), len(d.Files))
	}
	if total.MessagesNew != total.MessagesDeleted {
		t.Errorf("results %+v: every message stored must have been deleted", total)
	}
}

// Text PostgreSQL cannot store as it is (NUL, invalid UTF-8) is stored, found again and
// erased, and identifiers that differ only there stay different.
func TestUnstorableText(t *testing.T) {
	t.Parallel()
	s := openDSN(t, pgtest.FreshDatabase(t), Options{})
	defer s.Close()
	subject := "u\x00\xff"
	ids := []string{"m\x00", "m\uffff0", "m\xff", "m\uffffxff", "m\uffff"}
	var b meta.Batch
	for _, id := range ids {
		m := wamsg(id, subject)
		m.Raw = json.RawMessage("{\"t\":\"a\xffb\"}")
		b.Messages = append(b.Messages, m)
	}
	b.Contacts = []meta.Contact{{Platform: meta.WhatsApp, Channel: "acme", Subject: subject, WaID: subject, Name: "n\x00"}}
	if res := commit(t, s, b); res.MessagesNew != len(ids) {
		t.Fatalf("first delivery %+v: want %d new messages", res, len(ids))
	}
	if res := commit(t, s, b); res.MessagesDuplicate != len(ids) {
		t.Fatalf("redelivery %+v: want %d duplicates", res, len(ids))
	}
	d := storetest.Export(t, s, &store.Subject{ID: subject})
	if len(d.Messages) != len(ids) || len(d.Contacts) != 1 || d.Contacts[0].Name != "n\x00" {
		t.Fatalf("export by subject: %+v", d)
	}
	if err := s.Export(context.Background(), store.Filter{}, func(r store.Record) error {
		if !json.Valid(r.Doc) || !utf8.Valid(r.Doc) {
			t.Errorf("%s document is not JSON: %q", r.Kind, r.Doc)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	counts, err := s.Erase(context.Background(), store.EraseRequest{Subject: store.Subject{Platform: meta.WhatsApp, ID: subject}, SubjectRef: "hmac:x"})
	if err != nil || counts != (store.Counts{Contacts: 1, Messages: len(ids)}) {
		t.Fatalf("Erase: %+v %v", counts, err)
	}
}

// The export prints the bytes the SQLite backend prints for the same deliveries: every
// parser fixture, committed to both.
func TestExportMatchesSQLite(t *testing.T) {
	t.Parallel()
	pg := openDSN(t, pgtest.FreshDatabase(t), Options{})
	defer pg.Close()
	lite, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()

	var paths []string
	for _, dir := range []string{"fixtures", "extra"} {
		p, _ := filepath.Glob(filepath.Join("..", "..", "meta", "testdata", dir, "*.json"))
		paths = append(paths, p...)
	}
	sort.Strings(paths)
	committed := 0
	for _, p := range paths {
		body, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := meta.ParseDelivery(body)
		if err != nil || store.Validate(&parsed.Batch) != nil {
			continue
		}
		parsed.Batch.SetChannel("acme-" + filepath.Base(p))
		for _, s := range []store.Store{lite, pg} {
			commit(t, s, parsed.Batch)
		}
		committed++
	}
	if committed < 10 {
		t.Fatalf("only %d fixtures committed", committed)
	}
	// An erasure too: its ledger entry is built from columns, not stored as a document.
	var subject string
	for _, s := range []store.Store{lite, pg} {
		d := storetest.Export(t, s, nil)
		if len(d.Messages) == 0 {
			t.Fatal("fixtures stored no messages")
		}
		subject = d.Messages[0].Subject
		if _, err := s.Erase(context.Background(), store.EraseRequest{Subject: store.Subject{ID: subject}, Channel: d.Messages[0].Channel,
			Scope: store.ScopeMessages, SubjectRef: "hmac:1", RequestedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	dump := func(s store.Store, f store.Filter) []string {
		var out []string
		err := s.Export(context.Background(), f, func(r store.Record) error {
			doc := r.Doc
			if r.Kind == store.KindErasure { // completedAt is the time of each store's own erasure
				var e store.Erasure
				if err := json.Unmarshal(doc, &e); err != nil {
					return err
				}
				e.CompletedAt = time.Time{}
				var err error
				if doc, err = json.Marshal(e); err != nil {
					return err
				}
			}
			out = append(out, r.Kind+" "+string(doc))
			return nil
		})
		if err != nil {
			t.Fatalf("Export: %v", err)
		}
		return out
	}
	for _, f := range []store.Filter{{}, {Subject: &store.Subject{ID: subject}}} {
		l, p := dump(lite, f), dump(pg, f)
		if len(l) < 3 || !reflect.DeepEqual(l, p) {
			t.Errorf("export (filter %+v) differs:\nsqlite:   %q\npostgres: %q", f.Subject, l, p)
		}
	}
}

func TestReadOnly(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshDatabase(t)
	ctx := context.Background()
	if s, err := Open(ctx, dsn, Options{ReadOnly: true}); err == nil {
		s.Close()
		t.Fatal("read-only Open of a database without a store succeeded")
	}
	w := openDSN(t, dsn, Options{})
	commit(t, w, meta.Batch{Messages: []meta.Message{wamsg("m1", "u1")}})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := openDSN(t, dsn, Options{ReadOnly: true})
	defer r.Close()
	if got := len(storetest.Export(t, r, nil).Messages); got != 1 {
		t.Fatalf("read-only export: %d messages, want 1", got)
	}
	if _, err := r.Commit(ctx, &meta.Batch{}); !errors.Is(err, store.ErrReadOnly) {
		t.Fatalf("read-only Commit: %v", err)
	}
	if _, err := r.Erase(ctx, store.EraseRequest{Subject: store.Subject{ID: "u1"}}); !errors.Is(err, store.ErrReadOnly) {
		t.Fatalf("read-only Erase: %v", err)
	}
}
