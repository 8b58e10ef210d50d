package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/docenc"
)

type querier interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}

// identityChangeKeys are the contact locks of every identifier the changes link. An
// erasure of any of them either sees a change committed or makes it wait: the erasure
// locks every identifier it resolves, and resolves again until no new one appears.
func identityChangeKeys(z sealer, changes []meta.IdentityChange) []int32 {
	var keys []int32
	for i := range changes {
		for _, id := range changes[i].Identifiers() {
			keys = append(keys, contactLockKey(z.subject(id)))
		}
	}
	return keys
}

// insertIdentityChanges stores identity changes once per announcing message: a
// redelivered system message changes nothing. The caller holds their identifiers' locks.
func insertIdentityChanges(ctx context.Context, tx pgx.Tx, z sealer, l *locker, changes []meta.IdentityChange, res *store.CommitResult) error {
	sub := func(v string) any { return z.nullable(store.PurposeSubject, v) }
	for i := range changes {
		c := &changes[i]
		enc, err := docenc.Encode(c)
		if err != nil {
			return err
		}
		platform, id := keyText(string(c.Platform)), z.msgID(c.MessageID)
		d, err := z.seal(enc, "identity_changes", platform, id)
		if err != nil {
			return err
		}
		ct, err := tx.Exec(ctx, sqlInsertIdentityChange, platform, id, keyText(c.Channel),
			sub(c.OldWaID), sub(c.OldUserID), sub(c.NewWaID), sub(c.NewUserID), d)
		if err != nil {
			return fmt.Errorf("insert identity change: %w", err)
		}
		if ct.RowsAffected() == 0 {
			continue // a redelivered notice: its contacts were merged when it was stored
		}
		res.IdentityChanges++
		if err := mergeContacts(ctx, tx, z, l, c); err != nil {
			return err
		}
	}
	return nil
}

// mergeContacts folds the contact rows of a changed person's old and new identifiers into
// one row (store.ContactAfterChange), as the SQLite backend does. The caller holds the
// locks of the change's identifiers; those of further identifiers the rows hold are
// taken before any row is written (findLockedContacts).
func mergeContacts(ctx context.Context, tx pgx.Tx, z sealer, l *locker, c *meta.IdentityChange) error {
	probe := func(waID, userID string) *meta.Contact {
		// An empty subject matches no row: the rows are found by wa_id and user id.
		return &meta.Contact{Platform: c.Platform, Channel: c.Channel, WaID: waID, UserID: userID}
	}
	found, err := findLockedContacts(ctx, tx, z, l, probe(c.NewWaID, c.NewUserID), probe(c.OldWaID, c.OldUserID))
	if err != nil {
		return fmt.Errorf("merge contacts: %w", err)
	}
	var sides [2][]store.StoredContact
	for i, rows := range found {
		for _, r := range rows {
			sides[i] = append(sides[i], store.StoredContact{ID: r.id, Contact: r.c})
		}
	}
	keep, drop, merged := store.PlanContactMerge(c, sides[0], sides[1])
	for _, id := range drop {
		if _, err := tx.Exec(ctx, sqlDeleteContact, id); err != nil {
			return fmt.Errorf("merge contacts: %w", err)
		}
	}
	return writeContact(ctx, tx, z, keep, &merged)
}

// selectIdentifiers returns the identifiers in cols of the rows of table that match where.
func selectIdentifiers(ctx context.Context, q querier, table string, cols []string, where string, args []any) ([]string, error) {
	rows, err := q.Query(ctx, store.IdentifiersQuery(table, cols, where), args...)
	if err != nil {
		return nil, fmt.Errorf("resolve subject: %s: %w", table, err)
	}
	defer rows.Close()
	return store.ScanIdentifiers(rows, len(cols))
}
