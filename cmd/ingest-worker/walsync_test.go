package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/ingest"
)

// SIGKILL between a group's COMMIT and the WAL sync that follows it: the group's
// deliveries are committed (a reader sees them) and none of them was answered 200;
// every delivery answered before survives. The worker's failpoint holds every WAL sync
// from the moment a file exists, so the test can wait until in-flight deliveries are
// committed (the writer commits up to two groups ahead of a held sync: the one held and
// the next) and then kill. A worker that answered at COMMIT (before the sync) fails here
// however the kill is timed: its clients get their 200s while the sync is held.
//
// A process kill cannot lose what the kernel already holds in its page cache, so this
// proves the order (answer after sync), not the sync itself; a power loss cannot be
// simulated here (docs/ingest-worker.md, "Durability").
func TestKillBetweenCommitAndSync(t *testing.T) {
	dir := t.TempDir()
	dataDir, chFile, hold := filepath.Join(dir, "data"), filepath.Join(dir, "channels.yaml"), filepath.Join(dir, "hold-wal-sync")
	if err := os.WriteFile(chFile, []byte(channelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWorkerWith(t, []string{ingest.EnvTestingHoldWALSync + "=" + hold}, "--data-dir", dataDir, "--channels", chFile)

	// Before: deliveries are answered as usual.
	var ackedBefore atomic.Int64
	stopBefore := make(chan struct{})
	var once sync.Once
	before := load(w.addr, "before", 8, stopBefore, &ackedBefore, func(n int64) {
		if n == 100 {
			once.Do(func() { close(stopBefore) })
		}
	})
	if len(before.ok) == 0 || before.errs != 0 || firstOtherThan(before.codes, http.StatusOK) != 0 {
		t.Fatalf("before the failpoint: %d acknowledged, codes %v, %d errors", len(before.ok), before.codes, before.errs)
	}

	// Hold the syncs: each of 32 clients sends one delivery and waits for its answer.
	if err := os.WriteFile(hold, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const clients = 32
	var ackedHeld atomic.Int64
	stop := make(chan struct{})
	result := make(chan loadResult, 1)
	go func() { result <- load(w.addr, "held", clients, stop, &ackedHeld, nil) }()
	// A client's first delivery is the single message wamid.heldc<client>-0-a (load).
	var committed []string
	waitUntil(t, "held deliveries committed", func() bool {
		stored, _ := exportIDs(t, dataDir)
		committed = committed[:0]
		for c := range clients {
			if id := fmt.Sprintf("wamid.heldc%d-0-a", c); stored[id] > 0 {
				committed = append(committed, id)
			}
		}
		return len(committed) > 0
	})
	if n := ackedHeld.Load(); n != 0 {
		t.Fatalf("%d deliveries answered 200 while their WAL sync was held", n)
	}
	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-w.done
	close(stop)
	held := <-result
	if len(held.ok) != 0 || len(held.codes) != 0 {
		t.Fatalf("held deliveries got answers: codes %v, %d messages acknowledged", held.codes, len(held.ok))
	}

	// After the crash: everything acknowledged is there, once, and so are the committed
	// but unanswered deliveries (Meta would redeliver them; the store absorbs that).
	stored := checkAcked(t, dataDir, "after SIGKILL between COMMIT and sync", before.ok)
	for _, id := range committed {
		if stored[id] != 1 {
			t.Errorf("committed delivery %s stored %d times", id, stored[id])
		}
	}
	t.Logf("%d deliveries acknowledged before the failpoint, %d of the 32 held ones committed and unanswered at the kill", ackedBefore.Load(), len(committed))
	if err := os.Remove(hold); err != nil {
		t.Fatal(err)
	}
	w = startWorker(t, dataDir, chFile)
	if code, err := post(w.addr, delivery("44700900000", committed[0])); err != nil || code != http.StatusOK {
		t.Fatalf("redelivery after restart: %d %v", code, err)
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-w.done; err != nil {
		t.Fatalf("clean stop after restart: %v\n%s", err, w.log())
	}
	checkAcked(t, dataDir, "after the redelivery", map[string]bool{committed[0]: true})
}
