package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

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
			where, args := scopeWhere(f.Platform, f.Channel, ids, tb.SubjectCols...)
			add("resolve "+tb.Name+f.Suffix, store.IdentifiersQuery(tb.Name, tb.SubjectCols, where), args...)
		}
		for _, tb := range []struct {
			name string
			cols []string
		}{
			{"contacts", []string{"subject", "wa_id", "user_id"}}, {"identity_changes", store.IdentityChangeCols},
			{"messages", []string{"subject", "subject_alt"}}, {"statuses", []string{"subject", "subject_alt"}},
			{"receipts", []string{"subject"}}, {"files", []string{"subject", "subject_alt"}},
			{"leads", []string{"subject", "subject_alt"}},
		} {
			where, args := scopeWhere(f.Platform, f.Channel, ids, tb.cols...)
			add("erase "+tb.name+f.Suffix, eraseDelete(tb.name, where), args...)
		}
		if f.Channel != "" {
			continue // export names no channel
		}
		for _, tb := range store.Tables {
			q, args := exportQuery(tb, &store.Subject{Platform: f.Platform, ID: ids[0]}, ids)
			add("export "+tb.Name+f.Suffix, q, args...)
		}
	}
	wa := string(meta.WhatsApp)
	add("erase find contacts", sqlFindContacts, wa, "wa", ids[0], ids[0], ids[1])
	add("erase ledger", sqlInsertErasure, "hmac-sha256:00", wa, nil, "Messages", nil, int64(1), 0, 0, 0, 0, int64(0))
	const before, limit = int64(1700000000000), 1000
	platforms, msgIDs := []string{wa}, []string{"wamid.1"}
	add("prune aged messages", sqlPruneAgedMessages, before, limit)
	add("prune reactions", sqlPruneReactions, platforms, msgIDs)
	add("prune statuses of messages", pruneOfSQL("statuses"), platforms, msgIDs)
	add("prune files of messages", pruneOfSQL("files"), platforms, msgIDs)
	add("prune identity changes", sqlPruneIdentityChangesOf, platforms, msgIDs)
	add("prune aged statuses", sqlPruneAgedStatuses, before, limit)
	add("prune aged receipts", sqlPruneAgedReceipts, before, limit)
	add("prune contacts of", sqlPruneContactsOf, wa, "wa", ids[0])
	add("prune contact has records", sqlPruneHasRecords, wa, "wa", ids)
	add("prune aged leads", sqlPruneAgedLeads, before, limit)
	add("prune contact has leads", sqlPruneHasLeads, wa, "wa", ids)
	add("prune contact", sqlDeleteContact, int64(1))
	// The fetch queue and what removes bytes.
	add("claim fetches", sqlClaimFetches, before, before+60000, 16)
	add("retry file", sqlRetryFile, before, "Timeout", wa, "wamid.1", 0)
	add("fail file", sqlFailFile, store.FileFailed, store.FailNotFound, wa, "wamid.1", 0)
	add("release file", sqlReleaseFile, before, wa, "wamid.1", 0)
	add("file record", sqlFileRow, wa, "wamid.1", 0)
	add("file fetched", sqlFetchedFile, "00", int64(1), nil, int64(1), nil)
	add("blob exists", sqlBlobExists, "00")
	add("drop blobs", sqlDropBlobs, []string{"00"})
	add("unsend files", sqlDeleteFiles, wa, "wamid.1")
	// A mixed store's move of clear identifiers to their hashes (seal.go), which every
	// delivery runs until the reseal pass is done.
	for _, purpose := range []string{store.PurposeSubject, store.PurposeMessageID, store.PurposeLeadID} {
		for _, c := range unhashColumns[purpose] {
			add("unhash "+c.table+"."+c.col, unhashSQL(purpose, c.table, c.col), []string{wa}, []string{"wamid.1"}, []string{"h:x"})
		}
	}
	return out
}

// CheckPlans runs EXPLAIN for every statement of Statements with sequential scans
// disabled (so that the plan shows whether an index can serve it at all, whatever the
// size of the test's tables) and reports every sequential scan of a growing table and
// every index condition bounded only by platform or channel.
func (s *Store) CheckPlans(ctx context.Context) ([]store.PlanCheck, error) {
	var out []store.PlanCheck
	err := s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		out = out[:0]
		if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
			return fmt.Errorf("disable sequential scans: %w", err)
		}
		for _, st := range Statements() {
			var plan []byte
			if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+st.SQL, st.Args...).Scan(&plan); err != nil {
				return fmt.Errorf("explain %s: %w", st.Name, err)
			}
			lines, problems, err := planProblems(plan)
			if err != nil {
				return fmt.Errorf("explain %s: %w", st.Name, err)
			}
			out = append(out, store.PlanCheck{Name: st.Name, Plan: lines, Problems: problems})
		}
		return nil
	})
	return out, err
}

// planNode is what planProblems reads of an EXPLAIN (FORMAT JSON) node.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	Index     string     `json:"Index Name"`
	IndexCond string     `json:"Index Cond"`
	Plans     []planNode `json:"Plans"`
}

// planProblems flattens a JSON plan into lines and lists what is wrong with it: a
// sequential scan of a growing table, an index scan of one without an index condition
// (a full index scan) or one whose condition names no column that identifies few rows.
func planProblems(explained []byte) (lines, problems []string, err error) {
	var top []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(explained, &top); err != nil || len(top) == 0 {
		return nil, nil, fmt.Errorf("read plan: %w", err)
	}
	var walk func(n planNode, depth int)
	walk = func(n planNode, depth int) {
		line := strings.Repeat("  ", depth) + n.NodeType
		if n.Relation != "" {
			line += " on " + n.Relation
		}
		if n.Index != "" {
			line += " using " + n.Index
		}
		if n.IndexCond != "" {
			line += " (" + n.IndexCond + ")"
		}
		lines = append(lines, line)
		growing := store.Growing(n.Relation) || tableOfIndex(n.Index) != ""
		switch {
		case n.NodeType == "Seq Scan" && store.Growing(n.Relation):
			problems = append(problems, "full scan: "+strings.TrimSpace(line))
		case n.Index != "" && growing && n.IndexCond == "":
			problems = append(problems, "full index scan: "+strings.TrimSpace(line))
		case n.Index != "" && growing && !store.NarrowCondition(n.IndexCond):
			problems = append(problems, "search not bounded by an identifier: "+strings.TrimSpace(line))
		}
		for _, c := range n.Plans {
			walk(c, depth+1)
		}
	}
	walk(top[0].Plan, 0)
	return lines, problems, nil
}

// tableOfIndex is the growing table an index of the schema belongs to (its name starts
// with the table's), or "". A Bitmap Index Scan names its index, not its table.
func tableOfIndex(index string) string {
	best := ""
	for _, t := range store.GrowingTables {
		if strings.HasPrefix(index, t+"_") && len(t) > len(best) {
			best = t
		}
	}
	return best
}
