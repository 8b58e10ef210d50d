package store

import (
	"fmt"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"regexp"
	"slices"
)

// Erasure at scale (docs/erasure-at-scale.md): erasing one person, exporting one person
// and a retention batch must cost the same in a store of a thousand records or of a
// million, so every statement they run finds its rows through an index that leads with
// something that identifies few rows (an identifier, a message id, a timestamp range,
// a row id), never by scanning a table that grows with the tenant. Each SQL backend
// lists those statements (Statement) and checks their query plans (PlanCheck), in its
// tests and in `make bench-erasure`.

// SubjectIndexes are indexes both SQL backends add for erasure and export by subject:
// the contacts' unique index leads with platform and channel, which match every row of
// a tenant, so a person named without a channel (a DeletionRequest, an export) needs an
// index that leads with the subject.
const SubjectIndexes = `
CREATE INDEX IF NOT EXISTS contacts_by_subject ON contacts(subject);
`

// Statement is one SQL statement of subject erasure, export by subject or retention, as
// the backend runs it, with example arguments for its query plan.
type Statement struct {
	Name string
	SQL  string
	Args []any
}

// PlanIdentifiers are the example identifiers the statements are planned with: two, as a
// person with a wa_id and a business-scoped id resolves to.
var PlanIdentifiers = []string{"15555550100", "US.13491208655302741918"}

// PlanShape is one shape a statement takes: with or without a platform and a channel.
type PlanShape struct {
	Suffix   string // appended to the statement's name
	Platform meta.Platform
	Channel  string
}

// PlanShapes are the shapes every statement is planned in.
var PlanShapes = []PlanShape{{"", "", ""}, {"/platform", meta.WhatsApp, ""}, {"/platform+channel", meta.WhatsApp, "wa"}}

// GrowingTables are the tables whose size grows with the tenant's traffic: a statement
// of erasure, export by subject or retention must never scan one of them.
var GrowingTables = []string{"contacts", "messages", "statuses", "receipts", "files", "identity_changes", "leads", "tombstones", "erasures", "erasure_progress", "blobs"}

// PlanCheck is one statement's query plan and what is wrong with it (nothing, when
// every growing table is reached through a narrow index condition).
type PlanCheck struct {
	Name     string
	Plan     []string
	Problems []string
}

// narrowColumn names the columns whose index conditions bound a lookup to a few rows
// (next_at: a due-time range of the fetch queue, taken with a LIMIT, like ts; sha256: a
// content address, shared by the few records carrying the same bytes).
// platform, channel and state are deliberately absent: a condition on them alone reads
// (nearly) every row of a tenant.
var narrowColumn = regexp.MustCompile(`\b(id|rowid|subject|subject_alt|wa_id|user_id|message_id|lead_id|ts|watermark|reacts_to|old_wa_id|old_user_id|new_wa_id|new_user_id|subject_ref|next_at|sha256)\b`)

var quoted = regexp.MustCompile(`'[^']*'`)

// NarrowCondition reports whether an index condition (as a plan prints it) constrains a
// column that identifies few rows. Quoted literals are ignored: an argument's value is
// not a column.
func NarrowCondition(cond string) bool {
	return narrowColumn.MatchString(quoted.ReplaceAllString(cond, "''"))
}

// Growing reports whether table is one of GrowingTables.
func Growing(table string) bool { return slices.Contains(GrowingTables, table) }

// PlanErrors returns the problems of every check, one string each, named by statement.
func PlanErrors(checks []PlanCheck) []string {
	var out []string
	for _, c := range checks {
		for _, p := range c.Problems {
			out = append(out, fmt.Sprintf("%s: %s", c.Name, p))
		}
	}
	return out
}
