package sqlite

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// Durability with the sync off the writer's path.
//
// SQLite documents (wal.html, pragma.html#pragma_synchronous) that in WAL mode the only
// difference between synchronous=FULL and synchronous=NORMAL is one sync of the WAL file
// after each COMMIT: with NORMAL, a COMMIT has written the transaction's frames to the
// WAL (so any other connection and any later process sees it, and a process crash loses
// nothing) but not synced them, and a power loss may roll it back. NORMAL still syncs
// the WAL before every checkpoint copies frames into the database file, syncs the
// database file after the checkpoint, and syncs the WAL header when the WAL starts over,
// so the files stay consistent whatever the crash.
//
// The writer therefore commits with NORMAL and leaves the sync to the walSyncer: it
// hands each committed group over and goes on with the next group's SQL at once, while
// the syncer fdatasyncs the WAL and only then answers the group's callers. The writer
// commits that next group when the syncer has taken the previous one (one committed
// group waits at most: idle, turn), and until then applies every request that arrives
// into the group's open transaction. One sync covers
// every group committed before it started (fsync of a file flushes all its written
// data, through any descriptor: POSIX), so groups committed while a sync runs share the
// next one. No caller is answered before the sync that follows its COMMIT, which is
// exactly the guarantee synchronous=FULL gave; the writer no longer waits for it.
//
// The syncer opens the WAL file itself (SQLite does not expose its descriptor). The file
// it syncs is the one SQLite writes: the WAL is "<database>-wal", and SQLite deletes or
// replaces it only when the last connection to the database closes, which cannot happen
// while the store's writer connection is open. Each sync still checks that the name
// leads to the file it holds (same inode): if anything else replaced it, syncing either
// file proves nothing about the other, so the sync fails.

// walSyncer answers committed requests once the WAL holding them is on disk.
type walSyncer struct {
	path     string
	observer Observer
	// beforeSync, if set, runs before each sync (a test failpoint; see Options).
	beforeSync func()

	mu      sync.Mutex
	pending []committed // committed, no sync started since
	// turn gets a token (buffered, never blocking the syncer) each time the syncer
	// takes pending; the writer checks idle again after receiving one.
	turn chan struct{}
	kick chan struct{}
	done chan struct{}

	// Syncer goroutine only (and Open/Close around it).
	f      *os.File
	failed error // a sync failed: nothing more is answered as stored
}

// committed is what the writer hands over for one transaction: the requests it carried,
// each with its result, and what to report to the Observer once it is on disk.
type committed struct {
	reqs  []*request
	start time.Time
	err   error // the transaction's own error, if any
}

func openWALSyncer(dbPath string, observer Observer, beforeSync func()) (*walSyncer, error) {
	w := &walSyncer{path: dbPath + "-wal", observer: observer, beforeSync: beforeSync,
		turn: make(chan struct{}, 1), kick: make(chan struct{}, 1), done: make(chan struct{})}
	// Read-write so that no platform refuses to sync the descriptor; it is never written.
	f, err := os.OpenFile(w.path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open WAL for syncing: %w", err)
	}
	w.f = f
	// What Open itself wrote (schema, migrations, statistics) is on disk before Open
	// returns, like every other acknowledged write.
	if err := w.sync(); err != nil {
		_ = w.f.Close()
		return nil, err
	}
	go w.run()
	return w, nil
}

// sync flushes the WAL to stable storage.
func (w *walSyncer) sync() error {
	// Belt and braces: make sure the descriptor still is SQLite's WAL (see above).
	cur, err := os.Stat(w.path)
	if err != nil {
		return fmt.Errorf("sync WAL: %w", err)
	}
	mine, err := w.f.Stat()
	if err != nil {
		return fmt.Errorf("sync WAL: %w", err)
	}
	if !os.SameFile(mine, cur) {
		return fmt.Errorf("sync WAL: %s was replaced while the store was open", w.path)
	}
	if err := datasync(w.f); err != nil {
		return fmt.Errorf("sync WAL: %w", err)
	}
	return nil
}

// hand queues a committed transaction for the next sync. Writer goroutine.
func (w *walSyncer) hand(c committed) {
	w.mu.Lock()
	w.pending = append(w.pending, c)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default: // a sync round is already due: it will take c too
	}
}

// idle reports whether no committed group waits for a sync to start, that is whether the
// syncer has taken the writer's previous group. Writer goroutine.
//
// The writer commits a group only then (or when the group is full, or a request that
// must run alone, which is rare, ends it): group N+1's SQL and
// COMMIT run during group N's sync, and whatever arrives meanwhile is applied into group
// N+2's open transaction, committed as soon as the syncer takes N+1. Committing
// whenever anything was queued instead made transactions of about two deliveries on a
// busy machine (instead of 25), and each transaction costs CPU of its own (the WAL
// frames of the pages every transaction touches); simply waiting for the turn, as the
// writer did before, left it idle during the sync with requests queued, and the
// machine with it (docs/ingest-worker.md, "The sync off the writer's path").
func (w *walSyncer) idle() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending) == 0
}

// waitTurn returns once idle. Writer goroutine, before a request that runs alone.
func (w *walSyncer) waitTurn() {
	for !w.idle() {
		<-w.turn
	}
}

// stop answers what is pending and ends the syncer; the writer must have stopped.
func (w *walSyncer) stop() error {
	close(w.kick)
	<-w.done
	return w.f.Close()
}

func (w *walSyncer) run() {
	defer close(w.done)
	var batch []committed
	for range w.kick {
		w.mu.Lock()
		batch, w.pending = w.pending, batch[:0]
		w.mu.Unlock()
		select {
		case w.turn <- struct{}{}:
		default: // a token is already there: the writer looks at pending when it takes it
		}
		w.release(batch)
		clear(batch) // drop the requests: the slice is reused
	}
}

// release syncs the WAL once for batch and answers its requests.
func (w *walSyncer) release(batch []committed) {
	if len(batch) == 0 {
		return
	}
	if w.beforeSync != nil {
		w.beforeSync()
	}
	if w.failed == nil {
		if err := w.sync(); err != nil {
			// After a failed fsync the kernel may have dropped the unwritten pages and
			// report success next time: what reached the disk is unknown. Answer nothing
			// as stored any more; reopening the store (a worker restart) recovers from
			// whatever the files hold.
			w.failed = fmt.Errorf("%w; the store must be reopened", err)
		}
	}
	for _, c := range batch {
		err := c.err
		if err == nil {
			err = w.failed
		}
		if w.observer != nil {
			w.observer.ObserveCommit(len(c.reqs), time.Since(c.start), err)
		}
		for _, r := range c.reqs {
			if r.err == nil && w.failed != nil {
				r.err = w.failed
			}
			r.done <- r.err
		}
	}
}
