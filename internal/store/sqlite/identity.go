package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/docenc"
)

type querier interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}

// insertIdentityChanges stores identity changes once per announcing message: a
// redelivered system message changes nothing.
func (t *txn) insertIdentityChanges(ctx context.Context, changes []meta.IdentityChange, res *store.CommitResult) error {
	for i := range changes {
		c := &changes[i]
		d, err := docenc.Encode(c)
		if err != nil {
			return err
		}
		n, err := t.exec(ctx, "insertIdentityChange", string(c.Platform), c.MessageID, c.Channel,
			nullable(c.OldWaID), nullable(c.OldUserID), nullable(c.NewWaID), nullable(c.NewUserID), d)
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
