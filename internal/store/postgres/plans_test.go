package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// Every statement of subject erasure, export by subject and retention reaches the
// growing tables through an index bounded by an identifier, a message id, a timestamp
// or a row id: their cost does not grow with the store (docs/erasure-at-scale.md).
func TestErasureExportAndRetentionUseIndexes(t *testing.T) {
	t.Parallel()
	// Encrypted, the same columns hold keyed hashes: the same indexes serve them.
	for _, tc := range []struct {
		name string
		keys func(testing.TB) *store.Keys
	}{{"Clear", func(testing.TB) *store.Keys { return nil }}, {"Encrypted", storetest.NewKeys}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openDSN(t, pgtest.FreshDatabase(t), Options{Keys: tc.keys(t)})
			storetest.Populate(t, s, 300)
			// Tombstones too, so that the planner knows the table is not empty.
			var dels []meta.Deletion
			for i := range 300 {
				dels = append(dels, meta.Deletion{Platform: meta.WhatsApp, Channel: "c", MessageID: fmt.Sprintf("unsent-%d", i)})
			}
			commit(t, s, meta.Batch{Deletions: dels})
			if _, err := s.pool.Exec(context.Background(), "ANALYZE"); err != nil {
				t.Fatal(err)
			}
			checks, err := s.CheckPlans(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(checks) < 40 {
				t.Fatalf("only %d statements checked", len(checks))
			}
			for _, p := range store.PlanErrors(checks) {
				t.Error(p)
			}
			if t.Failed() {
				for _, c := range checks {
					if len(c.Problems) > 0 {
						t.Logf("%s:\n%s", c.Name, strings.Join(c.Plan, "\n"))
					}
				}
			}
		})
	}
}

// The check finds what it is meant to find: a sequential scan, a full index scan and
// an index search by platform and channel only.
func TestPlanProblemsFindsScans(t *testing.T) {
	t.Parallel()
	s := openDSN(t, pgtest.FreshDatabase(t), Options{})
	ctx := context.Background()
	for _, tc := range []struct{ name, sql, want string }{
		{"scan", "SELECT doc FROM messages WHERE doc = $1", "full scan"},
		{"full index scan", "SELECT id FROM messages ORDER BY platform, message_id LIMIT 1", "full index scan"},
		{"platform only", "SELECT doc FROM contacts WHERE platform = $1 AND channel = $2 AND doc = $3", "not bounded"},
	} {
		args := make([]any, strings.Count(tc.sql, "$"))
		for i := range args {
			args[i] = "x"
		}
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
			t.Fatal(err)
		}
		var plan []byte
		if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+tc.sql, args...).Scan(&plan); err != nil {
			t.Fatal(err)
		}
		_ = tx.Rollback(ctx)
		lines, got, err := planProblems(plan)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 || !strings.Contains(got[0], tc.want) {
			t.Errorf("%s: problems %q in plan %q, want %q", tc.name, got, lines, tc.want)
		}
	}
}
