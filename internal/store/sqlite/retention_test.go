package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// A store written before retention existed opens, gains the reaction and status-time
// columns filled from the stored documents, and its old records are pruned by age.
func TestRetentionReachesRecordsOfEarlierVersion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	old, err := sql.Open("sqlite", dsn(filepath.Join(dir, FileName), false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(`CREATE TABLE messages (id INTEGER PRIMARY KEY, platform TEXT NOT NULL, message_id TEXT NOT NULL,
			channel TEXT NOT NULL, subject TEXT NOT NULL, subject_alt TEXT, ts INTEGER, doc TEXT NOT NULL);
		CREATE TABLE statuses (id INTEGER PRIMARY KEY, platform TEXT NOT NULL, message_id TEXT NOT NULL, channel TEXT NOT NULL,
			subject TEXT NOT NULL, subject_alt TEXT, rank INTEGER NOT NULL, doc TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range storetest.MigratedMessages {
		if _, err := old.Exec(`INSERT INTO messages(platform, message_id, channel, subject, ts, doc) VALUES ('WhatsApp', ?, 'c', 'u', ?, ?)`,
			m.ID, m.TS, m.Doc); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range storetest.MigratedStatuses {
		if _, err := old.Exec(`INSERT INTO statuses(platform, message_id, channel, subject, rank, doc) VALUES ('WhatsApp', ?, 'c', 'u', 3, ?)`,
			st.ID, st.Doc); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.CheckPrunesMigrated(t, s)
}

// A retention run holds the single writer one batch at a time: a delivery that arrives
// mid-run is committed after the batch in progress, not after the run.
func TestDeliveriesCommitBetweenRetentionBatches(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cutoff := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	for chunk := range 4 {
		var b meta.Batch
		for i := range 500 {
			b.Messages = append(b.Messages, meta.Message{Platform: meta.WhatsApp, Channel: "c", ID: fmt.Sprintf("old-%d-%d", chunk, i),
				Subject: "u", Type: "text", Timestamp: cutoff.Add(-time.Duration(chunk*500+i+1) * time.Second)})
		}
		if _, err := s.Commit(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	var batches atomic.Int32
	done := make(chan error, 1)
	go func() {
		for {
			p, err := s.Prune(ctx, store.PruneRequest{Before: cutoff, Limit: 50})
			if err != nil {
				done <- err
				return
			}
			batches.Add(1)
			if !p.More {
				done <- nil
				return
			}
		}
	}()
	g.Eventually(batches.Load, 10*time.Second, time.Millisecond).Should(BeNumerically(">=", 2))
	young := meta.Message{Platform: meta.WhatsApp, Channel: "c", ID: "young", Subject: "u", Type: "text", Timestamp: cutoff.Add(time.Hour)}
	before := batches.Load()
	if _, err := s.Commit(ctx, &meta.Batch{Messages: []meta.Message{young}}); err != nil {
		t.Fatal(err)
	}
	waited := batches.Load() - before
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// 2000 messages in batches of 50, and a last one that finds nothing.
	// It waits for the batch in progress and perhaps the one queued before it; a run
	// holding the writer throughout would make it wait for all the rest (about 40).
	if total := batches.Load(); total != 41 || waited > 4 {
		t.Errorf("the delivery waited for %d batches (started after %d of %d); want at most the one or two in flight", waited, before, total)
	}
	if ids := storetest.Export(t, s, nil).Messages; len(ids) != 1 || ids[0].ID != "young" {
		t.Errorf("left after the run: %+v", ids)
	}
}
