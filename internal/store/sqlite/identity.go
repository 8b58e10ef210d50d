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
		res.IdentityChanges += int(n)
	}
	return nil
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
