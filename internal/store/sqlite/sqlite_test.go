package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	msqlite "modernc.org/sqlite"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	// Erasure batches of one row per table: every erasure of the suite runs over many
	// transactions and must end as if it had run in one.
	for _, o := range []Options{{}, {EraseBatch: 1}} {
		t.Run(fmt.Sprintf("EraseBatch=%d", o.EraseBatch), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				s, err := Open(t.TempDir(), o)
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}

type groupObserver struct {
	mu     sync.Mutex
	sizes  []int
	errors int
}

func (o *groupObserver) ObserveCommit(n int, _ time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sizes = append(o.sizes, n)
	if err != nil {
		o.errors++
	}
}

func TestDurabilityPragmas(t *testing.T) {
	t.Parallel()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mode, sync, err := s.Pragmas()
	if err != nil || mode != "wal" || sync != 1 {
		t.Fatalf("journal_mode=%s synchronous=%d err=%v; want wal and 1 (NORMAL, the store syncs the WAL itself)", mode, sync, err)
	}
	// On Linux, commits sync the WAL with fdatasync, as SQLite's own builds do.
	if runtime.GOOS == "linux" && !msqlite.FdatasyncEnabled() {
		t.Fatal("commits sync with fsync; Open should have switched them to fdatasync")
	}
	// The writer's page cache is the store's, not SQLite's 2 MiB default.
	var cache int
	if err := s.w.QueryRow("PRAGMA cache_size").Scan(&cache); err != nil || cache != -writerCacheKiB {
		t.Fatalf("writer cache_size=%d err=%v; want %d (KiB)", cache, err, -writerCacheKiB)
	}
}

func wamsg(id string) meta.Message {
	return meta.Message{Platform: meta.WhatsApp, Channel: "c", ID: id, Subject: "u", Direction: meta.Inbound, Type: "text"}
}

// Concurrent commits share transactions, and every one is still answered and stored.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	obs := &groupObserver{}
	dir := t.TempDir()
	s, err := Open(dir, Options{Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Commit(context.Background(), &meta.Batch{Messages: []meta.Message{wamsg(fmt.Sprint(i))}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	obs.mu.Lock()
	total, maxSize := 0, 0
	for _, sz := range obs.sizes {
		total += sz
		maxSize = max(maxSize, sz)
	}
	groups := len(obs.sizes)
	obs.mu.Unlock()
	if total != n || maxSize < 2 || groups >= n {
		t.Fatalf("%d requests in %d groups (largest %d): want grouping", total, groups, maxSize)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen: everything acknowledged is there.
	s2, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := len(storetest.Export(t, s2, nil).Messages); got != n {
		t.Fatalf("after reopen %d messages, want %d", got, n)
	}
	if _, err := s2.Commit(context.Background(), &meta.Batch{}); !errors.Is(err, store.ErrReadOnly) {
		t.Fatalf("read-only commit: %v", err)
	}
}

// One failing request is rolled back alone; the rest of its group commits.
func TestGroupIsolation(t *testing.T) {
	t.Parallel()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Hold the writer busy so the next requests queue into one group.
	release := make(chan struct{})
	var started atomic.Bool
	go s.submit(context.Background(), func(context.Context, *txn) error {
		started.Store(true)
		<-release
		return nil
	})
	for !started.Load() {
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	results := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 1 {
				results[i] = s.submit(context.Background(), func(ctx context.Context, t *txn) error {
					if err := t.apply(ctx, mustPrepare(wamsg("bad")), &store.CommitResult{}); err != nil {
						return err
					}
					return errors.New("boom after writing")
				})
				return
			}
			_, results[i] = s.Commit(context.Background(), &meta.Batch{Messages: []meta.Message{wamsg(fmt.Sprint("ok", i))}})
		}()
	}
	time.Sleep(50 * time.Millisecond) // let all three queue behind the blocked group
	close(release)
	wg.Wait()
	if results[0] != nil || results[2] != nil || results[1] == nil {
		t.Fatalf("results %v: want only the middle one to fail", results)
	}
	d := storetest.Export(t, s, nil)
	if len(d.Messages) != 2 {
		t.Fatalf("stored %+v: want ok0 and ok2 only", d.Messages)
	}
}

func mustPrepare(m meta.Message) *prepared {
	p, err := prepare(&meta.Batch{Messages: []meta.Message{m}}, store.Sealing{})
	if err != nil {
		panic(err)
	}
	return p
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procIO is the process's I/O counters (/proc/self/io), empty where there are none.
func procIO() map[string]int64 {
	out := map[string]int64{}
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			out[k] = n
		}
	}
	return out
}

// BenchmarkCommit measures the durable commit path alone (no HTTP), with concurrent
// callers as the worker has them, in clear (batchN) and with encryption at rest
// (batchN-sealed: Options.Keys), side by side:
// go test -run '^$' -bench Commit -benchtime 5s ./internal/store/sqlite
//
// Message ids are sequential (wamid.<n>.<i>) and senders take turns in the order of
// their numbers, or (the metaids runs) ids are shaped as Meta's, the base64 of the
// sender's number followed by a random part, and senders come in no order, as they do.
// A keyed hash scatters every id and every sender over its index, so the first load
// flatters the clear store: a group of deliveries appends to one page of the message-id
// index and to neighbouring entries of the subject index, while in the sealed store
// each lands on a page of its own (docs/encryption.md, SQLite's cost).
func BenchmarkCommit(b *testing.B) {
	for _, v := range []struct {
		batch   int
		sealed  bool
		metaIDs bool
	}{{1, false, false}, {1, true, false}, {1, false, true}, {1, true, true}, {10, false, false}, {10, true, false}, {10, false, true}, {10, true, true}} {
		batch, name := v.batch, fmt.Sprintf("batch%d", v.batch)
		msgID := func(user string, id int64, i int) string { return fmt.Sprintf("wamid.%d.%d", id, i) }
		sender := func(id int64) int64 { return id % 1000 }
		if v.metaIDs {
			name, msgID, sender = name+"-metaids", metaShapedID, scatteredSender
		}
		var opts Options
		if v.sealed {
			name, opts.Keys = name+"-sealed", storetest.NewKeys(b)
		}
		b.Run(name, func(b *testing.B) {
			s, err := Open(b.TempDir(), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var seq atomic.Int64
			b.SetParallelism(32)
			cpu0, io0 := cpuTime(), procIO()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := seq.Add(1)
					user := fmt.Sprint(15550000000 + sender(id)) // customers write again: contacts cached
					bt := meta.Batch{Contacts: []meta.Contact{{Platform: meta.WhatsApp, Channel: "c", Subject: user, WaID: user, Name: "Load"}}}
					for i := range batch {
						m := wamsg(msgID(user, id, i))
						m.Subject, m.Text, m.Timestamp = user, "Hello, is my order shipped yet?", time.Now().UTC()
						m.Raw = []byte(`{"from":"` + user + `","id":"x","timestamp":"1781100000","type":"text","text":{"body":"Hello"}}`)
						bt.Messages = append(bt.Messages, m)
					}
					if _, err := s.Commit(context.Background(), &bt); err != nil {
						b.Error(err)
						return
					}
				}
			})
			// CPU per op is steadier than wall time on a shared 2-core machine.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			// Bytes handed to write(2) (WAL frames, checkpointed pages) and read(2) (pages
			// not in SQLite's cache, the WAL a checkpoint copies), and the write calls: a
			// page more per delivery shows here.
			io1 := procIO()
			b.ReportMetric(float64(io1["wchar"]-io0["wchar"])/float64(b.N), "wB/op")
			b.ReportMetric(float64(io1["syscw"]-io0["syscw"])/float64(b.N), "writes/op")
			b.ReportMetric(float64(io1["rchar"]-io0["rchar"])/float64(b.N), "rB/op")
		})
	}
}

// scatteredSender is one of 1000 senders, in no order: a permutation of the sequence.
func scatteredSender(id int64) int64 {
	sum := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(id))) //nolint:gosec // G115: a positive sequence number
	return int64(binary.BigEndian.Uint64(sum[:8]) % 1000)                //nolint:gosec // G115: below 1000
}

// metaShapedID is a message id shaped as WhatsApp's: "wamid." and the base64 of a record
// holding the sender's number and a random part (here a hash of the delivery and index).
func metaShapedID(user string, id int64, i int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%d.%d", id, i))
	rec := append([]byte{0x1c, 0x18, byte(len(user))}, user...)
	rec = append(rec, 0x15, 0x02, 0x00, 0x12, 0x18, 0x14)
	rec = append(rec, strings.ToUpper(hex.EncodeToString(sum[:10]))...)
	return "wamid." + base64.StdEncoding.EncodeToString(append(rec, 0))
}

// After a restart the store still knows it holds tombstones: an unsent message that Meta
// redelivers stays deleted.
func TestTombstonesSurviveReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	del := meta.Deletion{Platform: meta.WhatsApp, Channel: "c", MessageID: "gone"}
	if _, err := s.Commit(context.Background(), &meta.Batch{Deletions: []meta.Deletion{del}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Commit(context.Background(), &meta.Batch{Messages: []meta.Message{wamsg("gone"), wamsg("kept")}})
	if err != nil {
		t.Fatal(err)
	}
	if res.MessagesNew != 1 || len(storetest.Export(t, s, nil).Messages) != 1 {
		t.Fatalf("after reopen: %+v; the deleted message came back", res)
	}
}

// A contact written and erased in the same group, then seen again: it must be stored
// again (the writer's contact cache must not outlive the erasure).
func TestEraseInGroupForgetsContacts(t *testing.T) {
	t.Parallel()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ana := meta.Contact{Platform: meta.WhatsApp, Channel: "c", Subject: "u1", WaID: "u1", Name: "Ana"}
	release := make(chan struct{})
	var started atomic.Bool
	go s.submit(context.Background(), func(context.Context, *txn) error {
		started.Store(true)
		<-release
		return nil
	})
	for !started.Load() {
		time.Sleep(time.Millisecond)
	}
	done := make(chan error, 2)
	go func() {
		_, err := s.Commit(context.Background(), &meta.Batch{Contacts: []meta.Contact{ana}})
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // the commit queues first, the erasure after it
	go func() {
		_, err := s.Erase(context.Background(), store.EraseRequest{Subject: store.Subject{Platform: meta.WhatsApp, ID: "u1"}})
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Commit(context.Background(), &meta.Batch{Contacts: []meta.Contact{ana}}); err != nil {
		t.Fatal(err)
	}
	if got := storetest.Export(t, s, nil).Contacts; len(got) != 1 {
		t.Fatalf("contacts after commit+erase in one group and a new commit: %+v", got)
	}
}

// Checkpoints run off the writer's path, and yet the WAL stays bounded under continuous
// load: the writer finishes what the checkpointer left and the WAL starts over.
func TestWALStaysBounded(t *testing.T) {
	oldFrames, oldInterval := walCatchUp, ckptInterval
	walCatchUp, ckptInterval = 100, 5*time.Millisecond
	t.Cleanup(func() { walCatchUp, ckptInterval = oldFrames, oldInterval })
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	text := strings.Repeat("x", 3000) // about one page per message
	var wg sync.WaitGroup
	var seq atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				m := wamsg(fmt.Sprint("w", seq.Add(1)))
				m.Text = text
				if _, err := s.Commit(context.Background(), &meta.Batch{Messages: []meta.Message{m}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	fi, err := os.Stat(filepath.Join(dir, FileName+"-wal"))
	if err != nil {
		t.Fatal(err)
	}
	// 4000 messages wrote well over 4000 frames; a WAL that never restarted holds them all.
	frames := fi.Size() / 4120
	t.Logf("WAL at most %d frames", frames)
	if frames > 20*walCatchUp {
		t.Fatalf("WAL grew to %d frames; want it restarted near %d", frames, walCatchUp)
	}
}

// A store written before erasure scopes existed opens, gains the ledger's channel and
// scope columns, and keeps its old ledger entries (shown without a scope: they erased
// every kind).
func TestMigratesLedgerOfEarlierVersion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	old, err := sql.Open("sqlite", dsn(filepath.Join(dir, FileName), false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(`CREATE TABLE erasures (id INTEGER PRIMARY KEY, subject_ref TEXT NOT NULL, platform TEXT NOT NULL,
		requested_at INTEGER, completed_at INTEGER NOT NULL, contacts INTEGER NOT NULL, messages INTEGER NOT NULL,
		statuses INTEGER NOT NULL, files INTEGER NOT NULL);
		INSERT INTO erasures(subject_ref, platform, completed_at, contacts, messages, statuses, files)
		VALUES ('hmac:old', 'WhatsApp', 1781100000000, 1, 2, 3, 4)`); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 { // and opening it again changes nothing
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req := store.EraseRequest{Subject: store.Subject{Platform: meta.WhatsApp, ID: "1555"}, Channel: "c", Scope: store.ScopeFiles, SubjectRef: "hmac:new"}
	if _, err := s.Erase(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	got := storetest.Export(t, s, nil).Erasures
	if len(got) != 2 {
		t.Fatalf("ledger %+v", got)
	}
	if got[0].SubjectRef != "hmac:old" || got[0].Scope != nil || got[0].Channel != "" || got[0].Counts != (store.Counts{Contacts: 1, Messages: 2, Statuses: 3, Files: 4}) {
		t.Errorf("old entry %+v", got[0])
	}
	if got[1].SubjectRef != "hmac:new" || !slices.Equal(got[1].Scope, []string{"Files"}) || got[1].Channel != "c" {
		t.Errorf("new entry %+v", got[1])
	}
}

// An erasure and a delivery of the same person can share a write group: the delivery's
// contact must be stored again, though the store's contact cache still held it when the
// group began.
func TestContactAfterErasureInTheSameGroup(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ana := meta.Contact{Platform: meta.WhatsApp, Channel: "c", Subject: "15555550142", WaID: "15555550142", Name: "Ana"}
	if _, err := s.Commit(context.Background(), &meta.Batch{Contacts: []meta.Contact{ana}}); err != nil {
		t.Fatal(err)
	}
	p, err := prepare(&meta.Batch{Contacts: []meta.Contact{ana}}, store.Sealing{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.inTx(context.Background(), func(tx *txn) error {
		if _, _, _, err := tx.eraseBatch(context.Background(), store.EraseRequest{Subject: store.Subject{ID: ana.WaID}}, DefaultEraseBatch); err != nil {
			return err
		}
		return tx.apply(context.Background(), p, &store.CommitResult{})
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM contacts`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("contacts after erase and delivery in one group: %d (%v), want 1", n, err)
	}
}
