package sqlite

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// heldSync is a BeforeWALSync failpoint that holds every sync until released, and counts
// the rounds that reached it.
type heldSync struct {
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func newHeldSync() *heldSync {
	return &heldSync{reached: make(chan struct{}, 100), release: make(chan struct{})}
}

func (h *heldSync) free() { h.once.Do(func() { close(h.release) }) }

func (h *heldSync) hook() {
	h.reached <- struct{}{}
	<-h.release
}

func storedMessages(g Gomega, s *Store) int {
	var n int
	g.Expect(s.r.QueryRow("SELECT count(*) FROM messages").Scan(&n)).To(Succeed())
	return n
}

// A commit is answered only after the WAL sync that follows its COMMIT, and the writer
// does not wait for that sync to commit the next group: while it is held, one more group
// is committed (visible to readers) and answered neither; the writer commits nothing
// further, but applies what arrives meanwhile in the next group's open transaction, so
// that only its COMMIT is left once the syncer takes the previous group. Writes other
// than deliveries (here Optimize, which goes through the same writer as Erase, Prune
// and the rest) wait too.
func TestAnswersWaitForWALSync(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	h := newHeldSync()
	s, err := Open(t.TempDir(), Options{BeforeWALSync: h.hook})
	g.Expect(err).NotTo(HaveOccurred())
	defer func() {
		h.free() // a failed assertion must not leave Close waiting for the held sync
		g.Expect(s.Close()).To(Succeed())
	}()

	answered := make(chan error, 10)
	commit := func(id string) {
		go func() {
			_, err := s.Commit(context.Background(), &meta.Batch{Messages: []meta.Message{wamsg(id)}})
			answered <- err
		}()
	}
	commit("first")
	g.Eventually(h.reached).Should(Receive(), "the first group reaches its sync")
	// The first group is committed (readers see it) and its caller still waits.
	g.Expect(storedMessages(g, s)).To(Equal(1))
	g.Consistently(answered, 100*time.Millisecond).ShouldNot(Receive())

	// The writer commits the next group during the held sync...
	commit("second")
	g.Eventually(func(g Gomega) int { return storedMessages(g, s) }).Should(Equal(2))
	// ...and then commits nothing more until the sync takes it...
	for i := range 3 {
		commit(fmt.Sprint("queued", i))
	}
	optimized := make(chan error, 1)
	go func() { optimized <- s.Optimize(context.Background()) }()
	// ...but applies what arrives meanwhile, in a transaction it has not committed.
	applied := make(chan struct{})
	submitted := make(chan error, 1)
	go func() {
		submitted <- s.submit(context.Background(), func(context.Context, *txn) error {
			close(applied)
			return nil
		})
	}()
	g.Eventually(applied).Should(BeClosed(), "requests arriving during the held sync are applied before it ends")
	g.Consistently(func(g Gomega) int { return storedMessages(g, s) }, 100*time.Millisecond).Should(Equal(2))
	g.Expect(answered).NotTo(Receive())
	g.Expect(optimized).NotTo(Receive())
	g.Expect(submitted).NotTo(Receive())

	h.free()
	for range 5 {
		g.Eventually(answered).Should(Receive(BeNil()))
	}
	g.Eventually(optimized).Should(Receive(BeNil()))
	g.Eventually(submitted).Should(Receive(BeNil()))
	g.Expect(storedMessages(g, s)).To(Equal(5))
}

// A failed WAL sync fails the commits it covered and every later one: after a failed
// fsync, what reached the disk is unknown, so nothing more is answered as stored.
func TestFailedWALSyncFailsCommits(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	s, err := Open(t.TempDir(), Options{})
	g.Expect(err).NotTo(HaveOccurred())
	defer s.Close()
	_, err = s.Commit(context.Background(), &meta.Batch{Messages: []meta.Message{wamsg("before")}})
	g.Expect(err).NotTo(HaveOccurred())

	// Make the next sync fail: the WAL's name no longer leads to a file. (SQLite goes on
	// writing through its open descriptor; the syncer cannot know what it would sync.)
	g.Expect(os.Remove(s.wal.path)).To(Succeed())
	_, err = s.Commit(context.Background(), &meta.Batch{Messages: []meta.Message{wamsg("during")}})
	g.Expect(err).To(MatchError(ContainSubstring("sync WAL")))
	_, err = s.Commit(context.Background(), &meta.Batch{Messages: []meta.Message{wamsg("after")}})
	g.Expect(err).To(MatchError(ContainSubstring("the store must be reopened")))
	g.Expect(err).NotTo(MatchError(store.ErrClosed))
}
