package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Stored reads a backend's stored file bytes beneath the store (the files directory on
// the volume, the blobs table in the database): every content it holds, temporary and
// unreferenced ones included. The file tests check it, not the store's own answers, to
// prove that erased bytes are gone.
type Stored func(t *testing.T) [][]byte

// FilesOpener returns a fresh, empty store and its Stored; the suite closes the store.
type FilesOpener func(t *testing.T) (store.Store, Stored)

// RunFiles runs the conformance tests of store.FileStore: the fetch queue, stored bytes
// and every erasure path removing them.
func RunFiles(t *testing.T, open FilesOpener) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, store.Store, Stored)
	}{
		{"CommitQueuesFiles", testFilesQueued},
		{"ClaimLeaseRetryFail", testFilesClaim},
		{"ConcurrentClaimsDisjoint", testFilesConcurrentClaims},
		{"ReleaseTakesBackTheClaimsAttempt", testFilesRelease},
		{"DedupeAndEraseKeepsShared", testFilesDedupe},
		{"TooLargeStopsAtTheLimit", testFilesTooLarge},
		{"ChecksumMismatchKeepsNothing", testFilesChecksum},
		{"GoneMeanwhileKeepsNothing", testFilesGone},
		{"EraseScopeAndChannel", testFilesEraseScope},
		{"RetentionRemovesBytes", testFilesPruned},
		{"UnsendRemovesBytes", testFilesUnsent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, stored := open(t)
			defer func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			tc.fn(t, s, stored)
		})
	}
}

// now is far from any real clock: the queue orders by the times it is given.
var fileNow = time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)

// mediaMsg is a message carrying one file (a WhatsApp media id) of subject in channel c.
func mediaMsg(id, subject, c string) (meta.Message, meta.File) {
	m := msg(id, subject, 0)
	m.Channel, m.Type = c, "image"
	return m, meta.File{Platform: meta.WhatsApp, Channel: c, MessageID: id, Subject: subject, Kind: "image",
		MediaID: "media-" + id, MIMEType: "image/jpeg"}
}

func key(id string) store.FileKey {
	return store.FileKey{Platform: meta.WhatsApp, MessageID: id}
}

// commitMedia stores one message with its file per id, all of subject in channel ch.
func commitMedia(t *testing.T, s store.Store, subject string, ids ...string) {
	t.Helper()
	var b meta.Batch
	for _, id := range ids {
		m, f := mediaMsg(id, subject, ch)
		b.Messages, b.Files = append(b.Messages, m), append(b.Files, f)
	}
	commit(t, s, b)
}

func storeBytes(t *testing.T, s store.Store, id string, payload []byte) store.StoredBytes {
	t.Helper()
	got, err := s.StoreFileBytes(context.Background(), key(id), bytes.NewReader(payload), 1<<20, "image/png")
	if err != nil {
		t.Fatalf("StoreFileBytes %s: %v", id, err)
	}
	return got
}

func fileStates(t *testing.T, s store.Store) map[string]store.FileState {
	t.Helper()
	out := map[string]store.FileState{}
	err := s.Export(context.Background(), store.Filter{}, func(r store.Record) error {
		if r.Kind != store.KindFile {
			return nil
		}
		var f store.FileRecord
		if err := r.Decode(&f); err != nil {
			return err
		}
		out[f.MessageID] = f.FileState
		return nil
	})
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	return out
}

// holds reports whether any stored content contains payload.
func holds(t *testing.T, stored Stored, payload []byte) bool {
	for _, b := range stored(t) {
		if bytes.Contains(b, payload) {
			return true
		}
	}
	return false
}

func payloadOf(id string) []byte {
	return bytes.Repeat([]byte("unique payload of "+id+"; "), 100)
}

func hexSum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func claimKeys(t *testing.T, s store.Store, at time.Time, limit int) []string {
	t.Helper()
	jobs, err := s.ClaimFetches(context.Background(), at, limit, time.Minute)
	if err != nil {
		t.Fatalf("ClaimFetches: %v", err)
	}
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.Key.MessageID)
	}
	return ids
}

// A delivery's files are stored with it, pending when there is something to fetch and
// Meta allows storing it, metadata-only otherwise; a redelivery adds nothing.
func testFilesQueued(t *testing.T, s store.Store, _ Stored) {
	mw, fw := mediaMsg("m-wa", "u1", ch)
	mu, fu := mediaMsg("m-url", "u1", ch)
	fu.MediaID, fu.URL = "", "https://cdn.example/a.jpg?sig=1"
	mn, fn := mediaMsg("m-story", "u1", ch)
	fn.NoFetch = true
	mx, fx := mediaMsg("m-none", "u1", ch)
	fx.MediaID = ""
	b := meta.Batch{Messages: []meta.Message{mw, mu, mn, mx}, Files: []meta.File{fw, fu, fn, fx}}
	if res := commit(t, s, b); res.FilesNew != 4 {
		t.Fatalf("FilesNew = %d, want 4", res.FilesNew)
	}
	if res := commit(t, s, b); res.FilesNew != 0 {
		t.Fatalf("redelivery: FilesNew = %d, want 0", res.FilesNew)
	}
	want := map[string]string{"m-wa": store.FilePending, "m-url": store.FilePending, "m-story": store.FileMetadataOnly, "m-none": store.FileMetadataOnly}
	for id, st := range fileStates(t, s) {
		if st.State != want[id] {
			t.Errorf("%s: state %q, want %q", id, st.State, want[id])
		}
	}
	stats, err := s.FileStats(context.Background(), fileNow)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Pending != 2 || stats.MetadataOnly != 2 || stats.Fetched+stats.Failed != 0 || stats.OldestPending.IsZero() {
		t.Errorf("FileStats = %+v, want 2 pending (with an oldest time) and 2 metadata-only", stats)
	}
	jobs, err := s.ClaimFetches(context.Background(), fileNow, 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].Key != key("m-wa") || jobs[1].Key != key("m-url") {
		t.Fatalf("claimed %+v, want m-wa then m-url", jobs)
	}
	if j := jobs[0]; j.MediaID != "media-m-wa" || j.URL != "" || j.Channel != ch || j.MIMEType != "image/jpeg" || j.Attempts != 0 || j.ReceivedAt.IsZero() {
		t.Errorf("WhatsApp job %+v", j)
	}
	if j := jobs[1]; j.URL != fu.URL || j.MediaID != "" {
		t.Errorf("URL job %+v", j)
	}
}

// A claim leases: a second claim skips the file until the lease ends, then takes it
// again (the fetcher died) with the attempt counted; a retry makes it due later; a
// failure ends it (NoToken as metadata-only); neither applies to a file no longer pending.
func testFilesClaim(t *testing.T, s store.Store, _ Stored) {
	ctx := context.Background()
	commitMedia(t, s, "u1", "a", "b", "c")
	if got := claimKeys(t, s, fileNow, 2); strings.Join(got, ",") != "a,b" {
		t.Fatalf("first claim %v, want a,b (oldest first, limit 2)", got)
	}
	if got := claimKeys(t, s, fileNow, 10); strings.Join(got, ",") != "c" {
		t.Fatalf("second claim %v, want only c (a and b are leased)", got)
	}
	if got := claimKeys(t, s, fileNow.Add(30*time.Second), 10); len(got) != 0 {
		t.Fatalf("claim within the lease %v, want none", got)
	}
	later := fileNow.Add(time.Minute)
	jobs, err := s.ClaimFetches(ctx, later, 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 3 || jobs[0].Attempts != 1 {
		t.Fatalf("claim after the lease: %+v, want all three again, a with 1 attempt", jobs)
	}
	if err := s.RetryFile(ctx, key("a"), later.Add(time.Hour), "Timeout"); err != nil {
		t.Fatal(err)
	}
	if err := s.FailFile(ctx, key("b"), store.FailNotFound); err != nil {
		t.Fatal(err)
	}
	if err := s.FailFile(ctx, key("c"), store.FailNoToken); err != nil {
		t.Fatal(err)
	}
	if got := claimKeys(t, s, later.Add(time.Hour-time.Second), 10); len(got) != 0 {
		t.Fatalf("claim before the retry is due: %v, want none", got)
	}
	st := fileStates(t, s)
	if st["a"] != (store.FileState{State: store.FilePending, FailReason: "Timeout"}) ||
		st["b"] != (store.FileState{State: store.FileFailed, FailReason: store.FailNotFound}) ||
		st["c"] != (store.FileState{State: store.FileMetadataOnly, FailReason: store.FailNoToken}) {
		t.Fatalf("states %+v", st)
	}
	jobs, err = s.ClaimFetches(ctx, later.Add(time.Hour), 10, time.Minute)
	if err != nil || len(jobs) != 1 || jobs[0].Key != key("a") || jobs[0].Attempts != 2 {
		t.Fatalf("claim when the retry is due: %+v, %v; want a with 2 attempts", jobs, err)
	}
	for _, err := range []error{
		s.RetryFile(ctx, key("b"), later, "Timeout"),
		s.FailFile(ctx, key("c"), store.FailAttempts),
		s.FailFile(ctx, key("nope"), store.FailAttempts),
	} {
		if !errors.Is(err, store.ErrFileGone) {
			t.Errorf("change of a file no longer pending: %v, want ErrFileGone", err)
		}
	}
	stats, err := s.FileStats(ctx, later)
	if err != nil || stats.Pending != 1 || stats.Failed != 1 || stats.MetadataOnly != 1 {
		t.Fatalf("FileStats %+v, %v", stats, err)
	}
}

// A released file is back in the queue at the time given, and its claim is not
// counted: claimed and released again and again (a paused channel's file), its attempts
// stay where they were. A file gone or no longer pending cannot be released.
func testFilesRelease(t *testing.T, s store.Store, _ Stored) {
	ctx := context.Background()
	commitMedia(t, s, "u1", "a", "b")
	jobs, err := s.ClaimFetches(ctx, fileNow, 10, time.Minute)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("first claim: %+v, %v; want a and b", jobs, err)
	}
	// One counted attempt first (a retry), so that a release that zeroed the count
	// instead of taking one back would show.
	if err := s.RetryFile(ctx, key("a"), fileNow, "Timeout"); err != nil {
		t.Fatal(err)
	}
	if err := s.FailFile(ctx, key("b"), store.FailNotFound); err != nil {
		t.Fatal(err)
	}
	at := fileNow
	for round := range 5 {
		jobs, err := s.ClaimFetches(ctx, at, 10, time.Minute)
		if err != nil || len(jobs) != 1 || jobs[0].Key != key("a") || jobs[0].Attempts != 1 {
			t.Fatalf("round %d: claim %+v, %v; want a with 1 attempt", round, jobs, err)
		}
		next := at.Add(time.Hour) // past the lease: only the release decides when it is due
		if err := s.ReleaseFile(ctx, key("a"), next); err != nil {
			t.Fatalf("round %d: ReleaseFile: %v", round, err)
		}
		if got := claimKeys(t, s, next.Add(-time.Second), 10); len(got) != 0 {
			t.Fatalf("round %d: claim before the release is due: %v, want none", round, got)
		}
		at = next
	}
	if st := fileStates(t, s)["a"]; st != (store.FileState{State: store.FilePending, FailReason: "Timeout"}) {
		t.Fatalf("released file: %+v, want pending with its last failure kept", st)
	}
	commitMedia(t, s, "u2", "c")
	if _, err := s.Erase(ctx, store.EraseRequest{Subject: store.Subject{ID: "u2"}, Scope: store.ScopeFiles, SubjectRef: "ref-u2"}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []store.FileKey{key("b"), key("c"), key("nope")} {
		if err := s.ReleaseFile(ctx, k, at); !errors.Is(err, store.ErrFileGone) {
			t.Errorf("release of %s (failed, erased, never stored): %v, want ErrFileGone", k.MessageID, err)
		}
	}
}

// Fetchers claiming at once (goroutines of one worker, or replicas on one database)
// never get the same file.
func testFilesConcurrentClaims(t *testing.T, s store.Store, _ Stored) {
	var ids []string
	for i := range 20 {
		ids = append(ids, fmt.Sprintf("f%02d", i))
	}
	commitMedia(t, s, "u1", ids...)
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			jobs, err := s.ClaimFetches(context.Background(), fileNow, 5, time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, j := range jobs {
				seen[j.Key.MessageID]++
			}
		})
	}
	wg.Wait()
	if len(seen) != 20 {
		t.Errorf("%d files claimed by 4 claims of 5, want all 20", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s claimed %d times", id, n)
		}
	}
}

// Two records with the same bytes share one stored copy; erasing one keeps the copy for
// the other, erasing both removes it. Storing again is a no-op.
func testFilesDedupe(t *testing.T, s store.Store, stored Stored) {
	ctx := context.Background()
	commitMedia(t, s, "u1", "a")
	commitMedia(t, s, "u2", "b")
	payload := payloadOf("shared")
	first, second := storeBytes(t, s, "a", payload), storeBytes(t, s, "b", payload)
	want := hexSum(payload)
	if first != (store.StoredBytes{SHA256: want, Size: int64(len(payload)), New: true}) || second.New || second.SHA256 != want {
		t.Fatalf("stored %+v then %+v, want one new copy of %s", first, second, want)
	}
	// A second call reads nothing and changes nothing.
	again, err := s.StoreFileBytes(ctx, key("a"), iotestErrReader{}, 1<<20, "")
	if err != nil || again.SHA256 != want || again.New {
		t.Fatalf("second StoreFileBytes: %+v, %v", again, err)
	}
	if got := stored(t); len(got) != 1 || !bytes.Equal(got[0], payload) {
		t.Fatalf("stored contents: %d, want the one payload", len(got))
	}
	stats, err := s.FileStats(ctx, fileNow)
	if err != nil || stats.Fetched != 2 || stats.Blobs != 1 || stats.Bytes != int64(len(payload)) {
		t.Fatalf("FileStats %+v, %v", stats, err)
	}
	if st := fileStates(t, s)["a"]; st != (store.FileState{State: store.FileFetched, StoredSHA256: want, Size: int64(len(payload))}) {
		t.Fatalf("exported state %+v", st)
	}
	if got := claimKeys(t, s, fileNow, 10); len(got) != 0 {
		t.Fatalf("fetched files claimed: %v", got)
	}
	counts, err := s.Erase(ctx, store.EraseRequest{Subject: store.Subject{ID: "u1"}, Scope: store.ScopeFiles, SubjectRef: "ref-u1"})
	if err != nil || counts.Files != 1 || counts.FileBytes != int64(len(payload)) {
		t.Fatalf("erase u1: %+v, %v; want 1 file of %d bytes", counts, err, len(payload))
	}
	if !holds(t, stored, payload) {
		t.Fatal("erasing one record removed the bytes the other still names")
	}
	readBack(t, s, "b", payload)
	if _, err := s.OpenFile(ctx, key("a")); !errors.Is(err, store.ErrFileGone) {
		t.Errorf("OpenFile of the erased record: %v, want ErrFileGone", err)
	}
	if _, err := s.Erase(ctx, store.EraseRequest{Subject: store.Subject{ID: "u2"}, SubjectRef: "ref-u2"}); err != nil {
		t.Fatal(err)
	}
	if got := stored(t); len(got) != 0 {
		t.Fatalf("%d contents left after both records were erased", len(got))
	}
	ledger := Export(t, s, nil).Erasures
	if len(ledger) != 2 || ledger[0].Counts.FileBytes != int64(len(payload)) {
		t.Fatalf("ledger %+v: want the bytes erased counted", ledger)
	}
}

func readBack(t *testing.T, s store.Store, id string, want []byte) {
	t.Helper()
	rc, err := s.OpenFile(context.Background(), key(id))
	if err != nil {
		t.Fatalf("OpenFile %s: %v", id, err)
	}
	defer rc.Close() //nolint:errcheck // a reader
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("OpenFile %s: %d bytes, %v; want the %d stored", id, len(got), err, len(want))
	}
}

// iotestErrReader fails any read: a call that must not read.
type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) {
	return 0, errors.New("read where nothing should be read")
}

// countingReader yields endless bytes and counts how many were read.
type countingReader struct{ n int64 }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	c.n += int64(len(p))
	return len(p), nil
}

// A file larger than the limit is refused without reading past the limit (give or take
// one buffer), and nothing of it is kept; the file stays pending.
func testFilesTooLarge(t *testing.T, s store.Store, stored Stored) {
	commitMedia(t, s, "u1", "big")
	const limit = 3*store.BlobChunk + 17
	r := &countingReader{}
	_, err := s.StoreFileBytes(context.Background(), key("big"), r, limit, "")
	if !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("StoreFileBytes of an endless reader: %v, want ErrTooLarge", err)
	}
	if r.n > limit+1+store.BlobChunk {
		t.Errorf("read %d bytes for a limit of %d", r.n, limit)
	}
	if got := stored(t); len(got) != 0 {
		t.Errorf("%d contents kept of a refused file", len(got))
	}
	if st := fileStates(t, s)["big"]; st.State != store.FilePending {
		t.Errorf("state %q, want still pending", st.State)
	}
	// Exactly the limit is allowed.
	exact := bytes.Repeat([]byte{'y'}, limit)
	if got, err := s.StoreFileBytes(context.Background(), key("big"), bytes.NewReader(exact), limit, ""); err != nil || got.Size != limit {
		t.Fatalf("a file of exactly the limit: %+v, %v", got, err)
	}
}

// Bytes that do not match the sha256 Meta declared are refused and not kept.
func testFilesChecksum(t *testing.T, s store.Store, stored Stored) {
	payload := payloadOf("declared")
	m, f := mediaMsg("sum", "u1", ch)
	d := sha256.Sum256(payload)
	f.SHA256 = base64.StdEncoding.EncodeToString(d[:])
	commit(t, s, meta.Batch{Messages: []meta.Message{m}, Files: []meta.File{f}})
	_, err := s.StoreFileBytes(context.Background(), key("sum"), bytes.NewReader(payloadOf("other")), 1<<20, "")
	if !errors.Is(err, store.ErrChecksum) {
		t.Fatalf("wrong bytes: %v, want ErrChecksum", err)
	}
	if got := stored(t); len(got) != 0 {
		t.Fatalf("%d contents kept of refused bytes", len(got))
	}
	if got := storeBytes(t, s, "sum", payload); got.SHA256 != hexSum(payload) {
		t.Fatalf("matching bytes: %+v", got)
	}
}

// eraseOnRead erases the subject when the download starts: the record goes while its
// bytes are being stored.
type eraseOnRead struct {
	s       store.Store
	subject string
	r       io.Reader
	erased  bool
	err     error
}

func (e *eraseOnRead) Read(p []byte) (int, error) {
	if !e.erased {
		e.erased = true
		_, e.err = e.s.Erase(context.Background(), store.EraseRequest{Subject: store.Subject{ID: e.subject}})
	}
	return e.r.Read(p)
}

// Bytes of a record erased before or while they are stored are not kept.
func testFilesGone(t *testing.T, s store.Store, stored Stored) {
	ctx := context.Background()
	commitMedia(t, s, "u1", "before")
	commitMedia(t, s, "u2", "while")
	if _, err := s.Erase(ctx, store.EraseRequest{Subject: store.Subject{ID: "u1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StoreFileBytes(ctx, key("before"), bytes.NewReader(payloadOf("before")), 1<<20, ""); !errors.Is(err, store.ErrFileGone) {
		t.Fatalf("bytes of an erased record: %v, want ErrFileGone", err)
	}
	r := &eraseOnRead{s: s, subject: "u2", r: bytes.NewReader(payloadOf("while"))}
	if _, err := s.StoreFileBytes(ctx, key("while"), r, 1<<20, ""); !errors.Is(err, store.ErrFileGone) || r.err != nil {
		t.Fatalf("bytes of a record erased meanwhile: %v (erase: %v), want ErrFileGone", err, r.err)
	}
	if got := stored(t); len(got) != 0 {
		t.Fatalf("%d contents left behind", len(got))
	}
}

// Files are their own kind: an erasure of messages or contacts only, or of another
// channel, keeps them and their bytes; one of files in their channel removes them.
func testFilesEraseScope(t *testing.T, s store.Store, stored Stored) {
	ctx := context.Background()
	commitMedia(t, s, "u1", "a")
	payload := payloadOf("scoped")
	storeBytes(t, s, "a", payload)
	for _, req := range []store.EraseRequest{
		{Subject: store.Subject{ID: "u1"}, Scope: store.ScopeMessages | store.ScopeContacts},
		{Subject: store.Subject{ID: "u1"}, Channel: "another-channel"},
	} {
		if c, err := s.Erase(ctx, req); err != nil || c.Files != 0 {
			t.Fatalf("erase %+v: %+v, %v", req, c, err)
		}
		if !holds(t, stored, payload) {
			t.Fatalf("erase %+v removed the bytes", req)
		}
	}
	c, err := s.Erase(ctx, store.EraseRequest{Subject: store.Subject{Platform: meta.WhatsApp, ID: "u1"}, Channel: ch, Scope: store.ScopeFiles})
	if err != nil || c.Files != 1 || c.FileBytes != int64(len(payload)) {
		t.Fatalf("erase files: %+v, %v", c, err)
	}
	if holds(t, stored, payload) || len(stored(t)) != 0 {
		t.Fatal("bytes left after the files were erased")
	}
}

// Retention removes an aged message's file bytes with its record, and counts them.
func testFilesPruned(t *testing.T, s store.Store, stored Stored) {
	old, young := aged("old", "u1", -10), aged("young", "u1", 10)
	_, fo := mediaMsg("old", "u1", ch)
	_, fy := mediaMsg("young", "u1", ch)
	commit(t, s, meta.Batch{Messages: []meta.Message{old, young}, Files: []meta.File{fo, fy}})
	po, py := payloadOf("old"), payloadOf("young")
	storeBytes(t, s, "old", po)
	storeBytes(t, s, "young", py)
	p := prune(t, s, 100)
	if p.Counts.Files != 1 || p.Counts.FileBytes != int64(len(po)) {
		t.Fatalf("pruned %+v, want 1 file of %d bytes", p.Counts, len(po))
	}
	if holds(t, stored, po) || !holds(t, stored, py) || len(stored(t)) != 1 {
		t.Fatal("retention left the aged bytes or took the young ones")
	}
}

// An unsent message's file bytes go with it.
func testFilesUnsent(t *testing.T, s store.Store, stored Stored) {
	commitMedia(t, s, "u1", "gone")
	payload := payloadOf("unsent")
	storeBytes(t, s, "gone", payload)
	commit(t, s, meta.Batch{Deletions: []meta.Deletion{{Platform: meta.WhatsApp, Channel: ch, MessageID: "gone"}}})
	if holds(t, stored, payload) || len(stored(t)) != 0 {
		t.Fatal("bytes of an unsent message left")
	}
	if _, err := s.OpenFile(context.Background(), key("gone")); !errors.Is(err, store.ErrFileGone) {
		t.Fatalf("OpenFile of an unsent file: %v", err)
	}
}

// MigratedFiles are file rows as a store from before shared files were fetched holds
// them (no state, no queue columns), keyed by message id, with their media id column.
var MigratedFiles = []struct{ ID, MediaID, Doc string }{
	{"old-media", "m1", `{"platform":"WhatsApp","channel":"c","messageID":"old-media","index":0,"subject":"u","mediaKind":"image","mediaID":"m1"}`},
	{"old-url", "", `{"platform":"Instagram","channel":"c","messageID":"old-url","index":0,"subject":"u","mediaKind":"image","url":"https://cdn.example/x"}`},
	{"old-story", "", `{"platform":"Instagram","channel":"c","messageID":"old-story","index":0,"subject":"u","mediaKind":"story_mention","url":"https://cdn.example/s","noFetch":true}`},
}

// MigratedFilesTable is the files table of that version, in the SQL both backends speak.
const MigratedFilesTable = `CREATE TABLE files (id %s, platform TEXT NOT NULL, message_id TEXT NOT NULL,
	idx INTEGER NOT NULL, channel TEXT NOT NULL, subject TEXT NOT NULL, subject_alt TEXT, media_id TEXT, doc TEXT NOT NULL)`

// CheckFilesMigrated checks that the MigratedFiles rows joined the queue when opened:
// pending when there is something to fetch and Meta allows storing it.
func CheckFilesMigrated(t *testing.T, s store.Store) {
	t.Helper()
	st := fileStates(t, s)
	want := map[string]string{"old-media": store.FilePending, "old-url": store.FilePending, "old-story": store.FileMetadataOnly}
	for id, state := range want {
		if st[id].State != state {
			t.Errorf("migrated %s: state %q, want %q", id, st[id].State, state)
		}
	}
	if got := claimKeys(t, s, fileNow, 10); strings.Join(got, ",") != "old-media,old-url" {
		t.Errorf("claimed %v after the migration, want old-media,old-url", got)
	}
}
