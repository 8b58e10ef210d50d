package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

type querier interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}

// insertIdentityChanges stores identity changes once per announcing message: a
// redelivered system message changes nothing.
func (t *txn) insertIdentityChanges(ctx context.Context, changes []meta.IdentityChange, res *store.CommitResult) error {
	for i := range changes {
		c := &changes[i]
		msgID := t.sl.ID(store.PurposeMessageID, c.MessageID)
		if t.s.mixed.Load() && msgID != c.MessageID {
			if _, err := t.resealWhere(ctx, encTableOf("identity_changes"), whereMessage,
				[]any{string(c.Platform), c.MessageID}, false); err != nil {
				return err
			}
		}
		d, err := seal(t.sl, c, "identity_changes", string(c.Platform), msgID)
		if err != nil {
			return err
		}
		id := func(v string) any { return nullable(t.sl.ID(store.PurposeSubject, v)) }
		n, err := t.exec(ctx, "insertIdentityChange", string(c.Platform), msgID, c.Channel,
			id(c.OldWaID), id(c.OldUserID), id(c.NewWaID), id(c.NewUserID), d)
		if err != nil {
			return err
		}
		if n == 0 {
			continue // a redelivered notice: its contacts were merged when it was stored
		}
		res.IdentityChanges++
		if err := t.mergeContacts(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// mergeContacts folds the contact rows of a changed person's old and new identifiers into
// one row (store.ContactAfterChange). The old identifiers stay reachable through the
// identity change; a row the notice finds none of is created, so that the person has a
// contact under the identifiers Meta now uses.
func (t *txn) mergeContacts(ctx context.Context, c *meta.IdentityChange) error {
	probe := func(waID, userID string) *meta.Contact {
		// An empty subject matches no row: the rows are found by wa_id and user id.
		return &meta.Contact{Platform: c.Platform, Channel: c.Channel, WaID: waID, UserID: userID}
	}
	newRows, err := t.findContacts(ctx, probe(c.NewWaID, c.NewUserID))
	if err != nil {
		return err
	}
	oldRows, err := t.findContacts(ctx, probe(c.OldWaID, c.OldUserID))
	if err != nil {
		return err
	}
	var newer, older []store.StoredContact
	for _, r := range newRows {
		newer = append(newer, store.StoredContact{ID: r.id, Contact: r.c})
		t.forgetContact(contactKey{r.c.Platform, r.c.Channel, r.c.Subject})
	}
	for _, r := range oldRows {
		older = append(older, store.StoredContact{ID: r.id, Contact: r.c})
		t.forgetContact(contactKey{r.c.Platform, r.c.Channel, r.c.Subject})
	}
	keep, drop, merged := store.PlanContactMerge(c, newer, older)
	for _, id := range drop {
		if _, err := t.exec(ctx, "deleteContact", id); err != nil {
			return err
		}
	}
	t.rememberContact(merged)
	return t.writeContact(ctx, keep, &merged)
}

// selectIdentifiers returns the identifiers in cols of the rows of table that match where.
func selectIdentifiers(ctx context.Context, q querier, table string, cols []string, where string, args []any) ([]string, error) {
	rows, err := q.QueryContext(ctx, store.IdentifiersQuery(table, cols, where), args...)
	if err != nil {
		return nil, fmt.Errorf("resolve subject: %s: %w", table, err)
	}
	defer rows.Close()
	return store.ScanIdentifiers(rows, len(cols))
}

// linkedInDocs returns, for the rows of a link table (contacts, identity_changes)
// that match where, every identifier their documents name, each in clear and hashed:
// the walk of a mixed store, whose rows may hold either form.
func linkedInDocs(ctx context.Context, q querier, sl store.Sealing, table, where string, args []any) ([]string, error) {
	cols := len(encTableOf(table).key)
	rows, err := q.QueryContext(ctx, linkedDocsQuery(table, where), args...)
	if err != nil {
		return nil, fmt.Errorf("resolve subject: %s: %w", table, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		key := make([]string, cols)
		var d string
		dest := make([]any, 0, cols+1)
		for i := range key {
			dest = append(dest, &key[i])
		}
		if err := rows.Scan(append(dest, &d)...); err != nil {
			return nil, fmt.Errorf("resolve subject: %s: %w", table, err)
		}
		doc, err := sl.OpenDoc(d, table, key...)
		if err != nil {
			return nil, fmt.Errorf("resolve subject: %w", err)
		}
		var ids []string
		if table == "contacts" {
			var c meta.Contact
			err = json.Unmarshal(doc, &c)
			ids = []string{c.Subject, c.WaID, c.UserID}
		} else {
			var c meta.IdentityChange
			err = json.Unmarshal(doc, &c)
			ids = c.Identifiers()
		}
		if err != nil {
			return nil, fmt.Errorf("resolve subject: decode %s: %w", table, err)
		}
		for _, id := range ids {
			out = append(out, id, sl.ID(store.PurposeSubject, id))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("resolve subject: %s: %w", table, err)
	}
	return out, nil
}

// linkedDocsQuery is linkedInDocs' query: the key and document of the rows of a link
// table matching where.
func linkedDocsQuery(table, where string) string {
	var cols []string
	for _, c := range encTableOf(table).key {
		cols = append(cols, c.name)
	}
	return tableSQL("SELECT %s, doc FROM %s WHERE %s", strings.Join(cols, ", "), table, where)
}
