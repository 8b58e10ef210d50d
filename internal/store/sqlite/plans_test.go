package sqlite

import (
	"context"
	"strings"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// Every statement of subject erasure, export by subject and retention reaches the
// growing tables through an index bounded by an identifier, a message id, a timestamp
// or a row id: their cost does not grow with the store (docs/erasure-at-scale.md). The
// store holds a few hundred people, and its planner statistics are those the store
// keeps (PRAGMA optimize).
func TestErasureExportAndRetentionUseIndexes(t *testing.T) {
	t.Parallel()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.Populate(t, s, 300)
	if err := s.Optimize(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Row counts kept, value samples (which re-plan statements at every new value) not.
	var stat1, stat4 int
	if err := s.r.QueryRow(`SELECT (SELECT count(*) FROM sqlite_stat1), (SELECT count(*) FROM sqlite_stat4)`).Scan(&stat1, &stat4); err != nil {
		t.Fatal(err)
	}
	if stat1 == 0 || stat4 != 0 {
		t.Fatalf("planner statistics: %d sqlite_stat1 rows, %d sqlite_stat4 rows; want some and none", stat1, stat4)
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
}

// The check finds what it is meant to find: a scan, and a search by platform only.
func TestPlanProblemsFindsScans(t *testing.T) {
	t.Parallel()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct{ name, sql, want string }{
		{"scan", "SELECT doc FROM messages WHERE doc = ?", "full scan"},
		{"or guard", "SELECT doc FROM identity_changes WHERE (? = '' OR platform = ?) AND (old_wa_id IN (?) OR new_wa_id IN (?) OR doc = ?)", "full scan"},
		{"platform only", "SELECT doc FROM contacts WHERE platform = ? AND channel = ? AND (subject = ? OR wa_id = ?)", "not bounded"},
	} {
		args := make([]any, strings.Count(tc.sql, "?"))
		for i := range args {
			args[i] = "x"
		}
		plan, err := s.explain(context.Background(), store.Statement{Name: tc.name, SQL: tc.sql, Args: args})
		if err != nil {
			t.Fatal(err)
		}
		got := planProblems(plan)
		if len(got) == 0 || !strings.Contains(got[0], tc.want) {
			t.Errorf("%s: problems %q in plan %q, want %q", tc.name, got, plan, tc.want)
		}
	}
}
