package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// A database written before retention existed opens, gains the reaction and
// status-time columns filled from the stored documents, and its old records are pruned
// by age.
func TestRetentionReachesRecordsOfEarlierVersion(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE messages (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, platform TEXT NOT NULL,
			message_id TEXT NOT NULL, channel TEXT NOT NULL, subject TEXT NOT NULL, subject_alt TEXT, ts BIGINT, doc TEXT NOT NULL);
		CREATE TABLE statuses (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, platform TEXT NOT NULL, message_id TEXT NOT NULL,
			channel TEXT NOT NULL, subject TEXT NOT NULL, subject_alt TEXT, rank INTEGER NOT NULL, doc TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range storetest.MigratedMessages {
		if _, err := conn.Exec(ctx, `INSERT INTO messages(platform, message_id, channel, subject, ts, doc) VALUES ('WhatsApp', $1, 'c', 'u', $2, $3)`,
			m.ID, m.TS, m.Doc); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range storetest.MigratedStatuses {
		if _, err := conn.Exec(ctx, `INSERT INTO statuses(platform, message_id, channel, subject, rank, doc) VALUES ('WhatsApp', $1, 'c', 'u', 3, $2)`,
			st.ID, st.Doc); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s := openDSN(t, dsn, Options{})
	defer s.Close()
	storetest.CheckPrunesMigrated(t, s)
}

// Retention and deliveries of the same people run at once (two pruning replicas, four
// delivering): nothing fails for good (deadlocks are retried), and a person who wrote
// again keeps their contact, however the prune's check and the delivery interleaved.
func TestPruneRacesDeliveriesOfTheSamePeople(t *testing.T) {
	t.Parallel()
	s := openDSN(t, pgtest.FreshDatabase(t), Options{})
	defer s.Close()
	ctx := context.Background()
	cutoff := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	const people = 40
	person := func(i int) string { return fmt.Sprintf("4470090%05d", i) }
	contact := func(i int) meta.Contact {
		return meta.Contact{Platform: meta.WhatsApp, Channel: "wa", Subject: person(i), WaID: person(i), Name: "P"}
	}
	message := func(id string, i int, ts time.Time) meta.Message {
		return meta.Message{Platform: meta.WhatsApp, Channel: "wa", ID: id, Subject: person(i), Type: "text", Timestamp: ts}
	}
	for i := range people {
		b := meta.Batch{Contacts: []meta.Contact{contact(i)}}
		for j := range 3 {
			b.Messages = append(b.Messages, message(fmt.Sprintf("old-%d-%d", i, j), i, cutoff.Add(-time.Duration(i*3+j+1)*time.Minute)))
		}
		commit(t, s, b)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p, err := s.Prune(ctx, store.PruneRequest{Before: cutoff, Limit: 2})
				if err != nil {
					errs <- err
					return
				}
				if !p.More {
					return
				}
			}
		}()
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < people; i += 4 {
				b := meta.Batch{Contacts: []meta.Contact{contact(i)}, Messages: []meta.Message{message(fmt.Sprintf("new-%d", i), i, cutoff.Add(time.Hour))}}
				if _, err := s.Commit(ctx, &b); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent prune and commit: %v", err)
	}
	d := storetest.Export(t, s, nil)
	if len(d.Messages) != people {
		t.Errorf("%d messages left, want the %d new ones", len(d.Messages), people)
	}
	have := map[string]bool{}
	for _, c := range d.Contacts {
		have[c.Subject] = true
	}
	for i := range people {
		if !have[person(i)] {
			t.Errorf("person %d wrote again but lost their contact", i)
		}
	}
}
