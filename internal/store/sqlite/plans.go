package sqlite

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Statements lists every statement of subject erasure, export by subject and retention
// as this backend builds it, for each shape it takes (with and without a platform and a
// channel), with example arguments (two identifiers, as a person with a wa_id and a
// business-scoped id resolves to).
func Statements() []store.Statement {
	ids := store.PlanIdentifiers
	var out []store.Statement
	add := func(name, q string, args ...any) {
		out = append(out, store.Statement{Name: name, SQL: q, Args: args})
	}
	for _, f := range store.PlanShapes {
		for _, tb := range store.LinkTables {
			where, args := subjectWhere(f.Platform, f.Channel, ids, tb.SubjectCols...)
			add("resolve "+tb.Name+f.Suffix, store.IdentifiersQuery(tb.Name, tb.SubjectCols, where), args...)
		}
		for _, tb := range batchedTables {
			where, args := subjectWhere(f.Platform, f.Channel, ids, tb.cols...)
			add("erase "+tb.table+f.Suffix, batchDelete(tb, where), append(args, DefaultEraseBatch)...)
		}
		for _, tb := range contactTables {
			where, args := subjectWhere(f.Platform, f.Channel, ids, tb.cols...)
			add("erase "+tb.table+f.Suffix, lastDelete(tb, where), args...)
		}
		// A mixed store's walk reads the link rows' documents (subjectIDs).
		for _, tb := range store.LinkTables {
			where, args := subjectWhere(f.Platform, f.Channel, ids, tb.SubjectCols...)
			add("resolve "+tb.Name+" documents"+f.Suffix, linkedDocsQuery(tb.Name, where), args...)
		}
		if f.Channel != "" {
			continue // export names no channel
		}
		for _, tb := range store.Tables {
			q, args := exportQuery(tb, &store.Subject{Platform: f.Platform, ID: ids[0]}, ids)
			add("export "+tb.Name+f.Suffix, q, args...)
		}
	}
	// A mixed store converts the rows stored under a clear identifier (reseal.go).
	wa := string(meta.WhatsApp)
	for _, name := range []string{"messages", "statuses", "files", "identity_changes"} {
		add("convert "+name, resealSelect(encTableOf(name), whereMessage), wa, "wamid.1")
	}
	add("convert reactions", sqlConvertReacts, "h:1", wa, "wamid.1")
	add("convert leads", resealSelect(encTableOf("leads"), whereLead), wa, "lead.1")
	add("convert receipts", resealSelect(encTableOf("receipts"), whereReceipts), wa, "c", ids[0])
	for _, col := range []string{"subject", "wa_id", "user_id"} {
		add("convert contacts by "+col, resealSelect(encTableOf("contacts"), whereContactBy(col)), ids[0], wa, "c")
	}
	add("lead token", sqlLeadNotifier, wa, "h:1", "lead.1")
	ref := "hmac-sha256:00"
	add("erase progress read", sqlProgressRead, ref, "", "Messages")
	add("erase progress add", sqlProgressAdd, ref, "", "Messages", 0, 1, 1, 0, 0)
	add("erase progress done", sqlProgressDone, ref, "", "Messages")
	add("erase ledger", sqlInsertErasure, ref, string(meta.WhatsApp), nil, "Messages", 0, 0, 0, 0, 0, 0, 0)
	const before, limit = 1700000000000, 1000
	add("prune aged messages", sqlPruneAgedMessages, before, limit)
	add("prune reactions", sqlPruneReactions, string(meta.WhatsApp), "wamid.1")
	add("prune statuses of messages", sqlPruneStatusesOf, string(meta.WhatsApp), "wamid.1")
	add("prune files of messages", sqlPruneFilesOf, string(meta.WhatsApp), "wamid.1")
	add("prune identity changes", sqlPruneIdentityChangesOf, string(meta.WhatsApp), "wamid.1")
	add("prune aged statuses", sqlPruneAgedStatuses, before, limit)
	add("prune aged receipts", sqlPruneAgedReceipts, before, limit)
	add("prune contacts of", statements["findContacts"], string(meta.WhatsApp), "wa", ids[0], ids[0], ids[0])
	q, args := hasRecordsQuery(meta.WhatsApp, "wa", ids)
	add("prune contact has records", q, args...)
	add("prune aged leads", sqlPruneAgedLeads, before, limit)
	q, args = hasLeadsQuery(meta.WhatsApp, "wa", ids)
	add("prune contact has leads", q, args...)
	add("prune contact", statements["deleteContact"], 1)
	// The fetch queue and the deletions that remove bytes.
	add("claim fetches", sqlClaimFetches, before, before+60000, 16)
	add("retry file", sqlRetryFile, before, "Timeout", string(meta.WhatsApp), "wamid.1", 0)
	add("fail file", sqlFailFile, store.FileFailed, store.FailNotFound, string(meta.WhatsApp), "wamid.1", 0)
	add("release file", sqlReleaseFile, before, string(meta.WhatsApp), "wamid.1", 0)
	add("file record", sqlFileRow, string(meta.WhatsApp), "wamid.1", "wamid.1", 0)
	add("file fetched", sqlFetchedFile, "00", 1, nil, nil, 1)
	add("blob used", sqlBlobUsed, "00")
	add("unsend files", statements["deleteFiles"], string(meta.WhatsApp), "wamid.1")
	return out
}

// planSearch is a plan line reading a table: SCAN (every row, in table or index order)
// or SEARCH (an index range) and its condition.
var planSearch = regexp.MustCompile(`^(SCAN|SEARCH) (\w+)(?: AS \w+)?(?: USING .*?)?(?: \((.*)\))?$`)

// CheckPlans runs EXPLAIN QUERY PLAN for every statement of Statements on the store's
// reader (with the planner statistics the store keeps) and reports every full scan of a
// growing table and every index search bounded only by platform or channel.
func (s *Store) CheckPlans(ctx context.Context) ([]store.PlanCheck, error) {
	var out []store.PlanCheck
	for _, st := range Statements() {
		plan, err := s.explain(ctx, st)
		if err != nil {
			return nil, err
		}
		out = append(out, store.PlanCheck{Name: st.Name, Plan: plan, Problems: planProblems(plan)})
	}
	return out, nil
}

func (s *Store) explain(ctx context.Context, st store.Statement) ([]string, error) {
	// The writer's connection: EXPLAIN of a DELETE prepares a write statement, which a
	// query_only reader refuses. EXPLAIN runs nothing. Through the writer's queue, so it
	// never meets a group's transaction.
	var plan []string
	err := s.submit(ctx, func(ctx context.Context, t *txn) error {
		rows, err := t.tx.QueryContext(ctx, "EXPLAIN QUERY PLAN "+st.SQL, st.Args...)
		if err != nil {
			return fmt.Errorf("explain %s: %w", st.Name, err)
		}
		defer rows.Close()
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				return fmt.Errorf("explain %s: %w", st.Name, err)
			}
			plan = append(plan, detail)
		}
		return rows.Err()
	})
	return plan, err
}

// planProblems lists what is wrong with a plan: a SCAN of a growing table, or a SEARCH of
// one whose condition names no column that identifies few rows.
func planProblems(plan []string) []string {
	var out []string
	for _, line := range plan {
		m := planSearch.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil || !store.Growing(m[2]) {
			continue
		}
		switch {
		case m[1] == "SCAN":
			out = append(out, "full scan: "+line)
		case !store.NarrowCondition(m[3]):
			out = append(out, "search not bounded by an identifier: "+line)
		}
	}
	return out
}
