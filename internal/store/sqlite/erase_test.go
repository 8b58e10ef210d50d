package sqlite

import (
	"context"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storegen"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// A person with more records than one erasure transaction deletes is erased in several,
// and a run cut short after its first batch (a crash) is finished by the next run with
// the request's whole counts, in one ledger entry: the ledger and the DeletionRequest
// status report what the request erased, as when erasure was one transaction.
func TestEraseInBatchesResumesWithWholeCounts(t *testing.T) {
	t.Parallel()
	s, err := Open(t.TempDir(), Options{EraseBatch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	person := storegen.Person(1, 0, 10, 0) // 10 messages, 10 statuses, 1 file, a contact, a lead
	other := storegen.Person(2, 0, 3, 0)
	for _, b := range []*meta.Batch{&person, &other} {
		if _, err := s.Commit(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	req := store.EraseRequest{Subject: store.Subject{Platform: meta.WhatsApp, ID: storegen.WaID(1)}, SubjectRef: "hmac-sha256:aa"}
	// The first batch only, as a run that crashed after it committed.
	var first store.Counts
	var done bool
	err = s.submit(context.Background(), func(ctx context.Context, t *txn) error {
		var err error
		first, _, done, err = t.eraseBatch(ctx, req, s.opts.EraseBatch)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if done || first.Messages != 4 || first.Statuses != 4 || first.Contacts != 0 {
		t.Fatalf("first batch: %+v done=%v, want 4 messages, 4 statuses, no contact, not done", first, done)
	}
	if got := storetest.Export(t, s, &store.Subject{ID: storegen.WaID(1)}); len(got.Contacts) != 1 || len(got.Messages) != 6 {
		t.Fatalf("after the first batch: %d contacts, %d messages, want the contact (it resolves the person) and 6 messages", len(got.Contacts), len(got.Messages))
	}
	counts, err := s.Erase(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Counts{Contacts: 2, Messages: 10, Statuses: 10, Files: 1} // the contact and its lead record
	if counts != want {
		t.Fatalf("counts of the resumed erasure: %+v, want %+v", counts, want)
	}
	all := storetest.Export(t, s, nil)
	if len(all.Erasures) != 1 || all.Erasures[0].Counts != want {
		t.Fatalf("ledger: %+v, want one entry with %+v", all.Erasures, want)
	}
	if len(all.Messages) != 3 || len(all.Contacts) != 1 {
		t.Fatalf("left: %d messages, %d contacts, want the other person's 3 and 1", len(all.Messages), len(all.Contacts))
	}
	var progress int
	if err := s.r.QueryRow(`SELECT count(*) FROM erasure_progress`).Scan(&progress); err != nil || progress != 0 {
		t.Fatalf("erasure progress rows left: %d (%v)", progress, err)
	}
	// Again: nothing left, zero counts, a second ledger entry.
	if counts, err := s.Erase(context.Background(), req); err != nil || counts != (store.Counts{}) {
		t.Fatalf("repeated erasure: %+v, %v", counts, err)
	}
}
