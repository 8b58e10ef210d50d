package store

import (
	"fmt"
	"slices"
	"strings"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// Bounds of ResolveIdentifiers. A person changes phone number a few times in the life of
// a tenant; a chain longer than this means something is wrong, and an erasure that
// stopped following it would leave records behind silently, so it fails instead.
const (
	maxIdentityHops = 64
	maxIdentifiers  = 512
)

// ResolveIdentifiers returns first and every identifier linked to it, first first: the
// closure over contact rows (a row links its subject, wa_id and business-scoped user id)
// and identity changes (a change links the old identifiers to the new ones), so that a
// chain of number changes A→B→C resolves to the same set from any of its identifiers.
// lookup returns every identifier held by any contact row or identity change that holds
// one of ids (duplicates and empty strings are fine); backends query their tables in it.
func ResolveIdentifiers(first string, lookup func(ids []string) ([]string, error)) ([]string, error) {
	seen := map[string]bool{first: true}
	ids := []string{first}
	frontier := []string{first}
	for hop := 0; len(frontier) > 0; hop++ {
		if hop == maxIdentityHops {
			return nil, fmt.Errorf("resolve subject: identity chain longer than %d changes", maxIdentityHops)
		}
		more, err := lookup(frontier)
		if err != nil {
			return nil, err
		}
		n := len(ids)
		ids = AddIdentifiers(ids, seen, more...)
		if len(ids) > maxIdentifiers {
			return nil, fmt.Errorf("resolve subject: more than %d linked identifiers", maxIdentifiers)
		}
		frontier = slices.Clone(ids[n:])
	}
	return ids, nil
}

// Table is a record table as both SQL backends lay it out: the kind its documents are
// exported as and the columns that hold an identifier of the person the record is about.
type Table struct {
	Kind, Name  string
	SubjectCols []string
}

// Tables lists the record tables in export order (the erasure ledger, exported last and
// only in full exports, is built from columns and is not among them).
var Tables = []Table{
	{KindContact, "contacts", []string{"subject", "wa_id", "user_id"}},
	{KindMessage, "messages", []string{"subject", "subject_alt"}},
	{KindStatus, "statuses", []string{"subject", "subject_alt"}},
	{KindReceipt, "receipts", []string{"subject"}},
	{KindFile, "files", []string{"subject", "subject_alt"}},
	{KindIdentityChange, "identity_changes", IdentityChangeCols},
	{KindLead, "leads", []string{"subject", "subject_alt"}},
}

// IdentityChangeCols are the identifier columns of the identity_changes table.
var IdentityChangeCols = []string{"old_wa_id", "old_user_id", "new_wa_id", "new_user_id"}

// LinkTables are the tables ResolveIdentifiers' lookup reads, with their identifier
// columns.
var LinkTables = []Table{
	{KindContact, "contacts", []string{"subject", "wa_id", "user_id"}},
	{KindIdentityChange, "identity_changes", IdentityChangeCols},
}

// Rows is what the row sets of both SQL drivers offer (database/sql and pgx).
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// IdentifiersQuery is the query for the identifiers in cols of the rows of table that
// match where (NULLs read as empty strings, which ResolveIdentifiers ignores).
func IdentifiersQuery(table string, cols []string, where string) string {
	sel := make([]string, len(cols))
	for i, c := range cols {
		sel[i] = "COALESCE(" + c + ", '')"
	}
	return "SELECT " + strings.Join(sel, ", ") + " FROM " + table + " WHERE " + where
}

// ScanIdentifiers reads the rows of an IdentifiersQuery over n columns.
func ScanIdentifiers(rows Rows, n int) ([]string, error) {
	var ids []string
	vals := make([]string, n)
	ptrs := make([]any, n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("resolve subject: %w", err)
		}
		ids = append(ids, vals...)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("resolve subject: %w", err)
	}
	return ids, nil
}

// ContactAfterChange is the one contact row that stands for a person once identity
// change c is stored, folding the rows found under its new identifiers (newer) and its
// old ones (older): keyed by the new business-scoped id, else the new phone number. The
// identifiers are the new ones (an old number or id must not live on as the contact's);
// a row already known under a new identifier fills those it lacks (a new BSUID seen
// before the notice that carries only the new number). The name and username, which a
// number change does not change, come from the newer rows first.
func ContactAfterChange(c *meta.IdentityChange, newer, older []meta.Contact) meta.Contact {
	merged := meta.Contact{Platform: c.Platform, Channel: c.Channel, WaID: c.NewWaID, UserID: c.NewUserID, ParentUserID: c.NewParentUserID}
	old := func(id string) bool { return id != "" && (id == c.OldWaID || id == c.OldUserID) }
	fill := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	for _, r := range newer {
		if !old(r.WaID) {
			fill(&merged.WaID, r.WaID)
		}
		if !old(r.UserID) {
			fill(&merged.UserID, r.UserID)
			fill(&merged.ParentUserID, r.ParentUserID)
		}
	}
	for _, r := range slices.Concat(newer, older) {
		fill(&merged.Name, r.Name)
		fill(&merged.Username, r.Username)
	}
	merged.Subject = merged.UserID
	fill(&merged.Subject, merged.WaID)
	return merged
}

// StoredContact is a contact row as a backend read it: its row id and its document.
type StoredContact struct {
	ID      int64
	Contact meta.Contact
}

// PlanContactMerge decides how the rows found under a change's new identifiers (newer)
// and old ones (older) become one (a row may be among both): keep is the row to update
// with merged (0: insert it), drop the rows to delete first (the kept row may take over
// one's subject, which is unique).
func PlanContactMerge(c *meta.IdentityChange, newer, older []StoredContact) (keep int64, drop []int64, merged meta.Contact) {
	seen := map[int64]bool{}
	var n, o []meta.Contact
	for i, rows := range [][]StoredContact{newer, older} {
		for _, r := range rows {
			if seen[r.ID] {
				continue
			}
			seen[r.ID] = true
			if i == 0 {
				n = append(n, r.Contact)
			} else {
				o = append(o, r.Contact)
			}
			if keep == 0 {
				keep = r.ID
			} else {
				drop = append(drop, r.ID)
			}
		}
	}
	return keep, drop, ContactAfterChange(c, n, o)
}
