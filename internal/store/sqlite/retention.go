package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Prune implements store.Store. The batch is one operation of the single writer, so it
// is committed in a group with the deliveries queued beside it and holds the writer
// only for one bounded batch: deliveries queued behind it wait for one batch, never for
// a whole run.
func (s *Store) Prune(ctx context.Context, req store.PruneRequest) (store.Pruned, error) {
	if req.Limit <= 0 {
		return store.Pruned{}, store.ErrPruneLimit
	}
	var res store.Pruned
	var unref []string
	err := s.submitSealed(ctx, func(ctx context.Context, t *txn) error {
		var err error
		unref, err = t.deletingFiles(func() error {
			res, err = store.PruneBatch(ctx, pruneOps{t}, req)
			return err
		})
		return err
	})
	if err != nil {
		return store.Pruned{}, fmt.Errorf("prune: %w", err)
	}
	s.removeUnreferenced(ctx, unref)
	return res, nil
}

// pruneOps are the SQLite statements of store.PruneBatch, in the writer's transaction.
type pruneOps struct{ t *txn }

var _ store.PruneOps = pruneOps{}

// returningChange is what store.ScanChangedIdentities reads of a deleted identity change.
const returningChange = ` RETURNING platform, channel, COALESCE(old_wa_id, ''), COALESCE(old_user_id, ''), COALESCE(new_wa_id, ''), COALESCE(new_user_id, '')`

const returningRecord = ` RETURNING platform, message_id, channel, subject, COALESCE(subject_alt, '')`

// Retention's statements (listed for the query-plan check in plans.go).
const (
	sqlPruneAgedMessages = `DELETE FROM messages WHERE id IN
		(SELECT id FROM messages WHERE ts < ? ORDER BY ts LIMIT ?)` + returningRecord
	sqlPruneReactions         = `DELETE FROM messages WHERE platform = ? AND reacts_to = ?` + returningRecord
	sqlPruneStatusesOf        = `DELETE FROM statuses WHERE platform = ? AND message_id = ?`
	sqlPruneFilesOf           = `DELETE FROM files WHERE platform = ? AND message_id = ?` + returningBlob
	sqlPruneIdentityChangesOf = `DELETE FROM identity_changes WHERE platform = ? AND message_id = ?` + returningChange
	sqlPruneAgedStatuses      = `DELETE FROM statuses WHERE id IN
		(SELECT id FROM statuses WHERE ts < ? ORDER BY ts LIMIT ?)` + returningRecord
	sqlPruneAgedReceipts = `DELETE FROM receipts WHERE id IN
		(SELECT id FROM receipts WHERE watermark < ? ORDER BY watermark LIMIT ?)
		RETURNING platform, '', channel, subject, ''`
)

// deleteReturning runs the prepared statement name, a DELETE ... RETURNING of records.
func (o pruneOps) deleteReturning(ctx context.Context, name string, args ...any) ([]store.PrunedRecord, error) {
	rows, err := o.t.stmt(ctx, name).QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	return scanRecords(rows, nil)
}

// scanRecords appends the rows of a returningRecord to out and closes them.
func scanRecords(rows *sql.Rows, out []store.PrunedRecord) ([]store.PrunedRecord, error) {
	defer rows.Close()
	for rows.Next() {
		var r store.PrunedRecord
		var platform string
		if err := rows.Scan(&platform, &r.MessageID, &r.Channel, &r.Subject, &r.SubjectAlt); err != nil {
			return out, err
		}
		r.Platform = meta.Platform(platform)
		out = append(out, r)
	}
	return out, rows.Err()
}

// eachMessage runs the prepared statement name for every message's (platform, message id).
func (o pruneOps) eachMessage(ctx context.Context, name string, msgs []store.PrunedRecord, fn func(*sql.Stmt, store.PrunedRecord) error) error {
	st := o.t.stmt(ctx, name)
	for _, m := range msgs {
		if err := fn(st, m); err != nil {
			return err
		}
	}
	return nil
}

func (o pruneOps) DeleteAgedMessages(ctx context.Context, before time.Time, limit int) ([]store.PrunedRecord, error) {
	return o.deleteReturning(ctx, "pruneAgedMessages", before.UnixMilli(), limit)
}

func (o pruneOps) DeleteReactionsTo(ctx context.Context, msgs []store.PrunedRecord) ([]store.PrunedRecord, error) {
	var out []store.PrunedRecord
	err := o.eachMessage(ctx, "pruneReactions", msgs,
		func(st *sql.Stmt, m store.PrunedRecord) error {
			rows, err := st.QueryContext(ctx, string(m.Platform), m.MessageID)
			if err != nil {
				return err
			}
			out, err = scanRecords(rows, out)
			return err
		})
	return out, err
}

func (o pruneOps) deleteEach(ctx context.Context, name string, msgs []store.PrunedRecord) (int, error) {
	n := 0
	err := o.eachMessage(ctx, name, msgs, func(st *sql.Stmt, m store.PrunedRecord) error {
		res, err := st.ExecContext(ctx, string(m.Platform), m.MessageID)
		if err != nil {
			return err
		}
		k, err := res.RowsAffected()
		n += int(k)
		return err
	})
	return n, err
}

func (o pruneOps) DeleteStatusesOf(ctx context.Context, msgs []store.PrunedRecord) (int, error) {
	return o.deleteEach(ctx, "pruneStatusesOf", msgs)
}

// DeleteFilesOf deletes file records; their content addresses are collected and the
// bytes unlinked after the commit, unless another file row still names them.
func (o pruneOps) DeleteFilesOf(ctx context.Context, msgs []store.PrunedRecord) (int, int64, error) {
	n, bytes := 0, int64(0)
	err := o.eachMessage(ctx, "pruneFilesOf", msgs, func(st *sql.Stmt, m store.PrunedRecord) error {
		k, b, err := o.t.deleteFiles(ctx, st, string(m.Platform), m.MessageID)
		n, bytes = n+k, bytes+b
		return err
	})
	return n, bytes, err
}

func (o pruneOps) DeleteIdentityChangesOf(ctx context.Context, msgs []store.PrunedRecord) (int, []store.Identity, error) {
	n := 0
	var ids []store.Identity
	err := o.eachMessage(ctx, "pruneIdentityChangesOf", msgs,
		func(st *sql.Stmt, m store.PrunedRecord) error {
			rows, err := st.QueryContext(ctx, string(m.Platform), m.MessageID)
			if err != nil {
				return err
			}
			defer rows.Close()
			k, more, err := store.ScanChangedIdentities(rows)
			n, ids = n+k, append(ids, more...)
			return err
		})
	return n, ids, err
}

func (o pruneOps) DeleteAgedStatuses(ctx context.Context, before time.Time, limit int) ([]store.PrunedRecord, error) {
	return o.deleteReturning(ctx, "pruneAgedStatuses", before.UnixMilli(), limit)
}

func (o pruneOps) DeleteAgedReceipts(ctx context.Context, before time.Time, limit int) ([]store.PrunedRecord, error) {
	return o.deleteReturning(ctx, "pruneAgedReceipts", before.UnixMilli(), limit)
}

// LockIdentities: nothing to lock, the writer is the only one.
func (pruneOps) LockIdentities(context.Context, []store.Identity) error { return nil }

// ContactsOf looks up the contacts by the stored identifier of a pruned record. Their
// IDs are stored values too (what HasRecords compares); their Key is the contact's
// own subject, as the writer's contact cache knows it.
func (o pruneOps) ContactsOf(ctx context.Context, id store.Identity) ([]store.PrunedContact, error) {
	v := id.ID
	if o.t.s.mixed.Load() && !store.IsHashedID(v) {
		if err := o.t.convertContacts(ctx, id.Platform, id.Channel, v); err != nil {
			return nil, err
		}
		v = o.t.sl.ID(store.PurposeSubject, v)
	}
	found, err := o.t.findStoredContacts(ctx, id.Platform, id.Channel, v, v, v)
	if err != nil {
		return nil, err
	}
	out := make([]store.PrunedContact, 0, len(found))
	for _, r := range found {
		c := store.PrunedContact{RowID: r.id, Key: store.Identity{Platform: r.c.Platform, Channel: r.c.Channel, ID: r.c.Subject}}
		c.IDs = store.AddIdentifiers(nil, map[string]bool{}, r.stored[:]...)
		out = append(out, c)
	}
	return out, nil
}

// forms are the stored identifiers ids with, while the store is mixed, the keyed hash
// of each one still in clear: records filed under either form are found.
func (t *txn) forms(ids []string) []string {
	if !t.s.mixed.Load() || !t.sl.Encrypts() {
		return ids
	}
	out := slices.Clone(ids)
	for _, id := range ids {
		if id != "" && !store.IsHashedID(id) {
			out = append(out, t.sl.ID(store.PurposeSubject, id))
		}
	}
	return out
}

// HasRecords asks one indexed question per table and identifier column. The unary "+"
// keeps SQLite from answering platform = ? through the (platform, message_id) indexes,
// which would scan every message of the platform; the subject indexes find the rows.
func (o pruneOps) HasRecords(ctx context.Context, platform meta.Platform, channel string, ids []string) (bool, error) {
	q, args := hasRecordsQuery(platform, channel, o.t.forms(ids))
	st, err := o.t.prepared(ctx, q)
	if err != nil {
		return false, err
	}
	var left bool
	if err := st.QueryRowContext(ctx, args...).Scan(&left); err != nil {
		return false, err
	}
	return left, nil
}

// hasRecordsQuery is HasRecords' statement.
func hasRecordsQuery(platform meta.Platform, channel string, ids []string) (string, []any) {
	in := "(" + strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",") + ")"
	var args []any
	var arms []string
	for _, q := range []struct{ table, col string }{
		{"messages", "subject"}, {"messages", "subject_alt"},
		{"statuses", "subject"}, {"statuses", "subject_alt"},
		{"files", "subject"}, {"files", "subject_alt"},
	} {
		arms = append(arms, "EXISTS (SELECT 1 FROM "+q.table+" WHERE "+q.col+" IN "+in+" AND +platform = ? AND +channel = ?)")
		for _, id := range ids {
			args = append(args, id)
		}
		args = append(args, string(platform), channel)
	}
	// receipts_key (platform, channel, subject, state) answers this one directly.
	arms = append(arms, "EXISTS (SELECT 1 FROM receipts WHERE platform = ? AND channel = ? AND subject IN "+in+")")
	args = append(args, string(platform), channel)
	for _, id := range ids {
		args = append(args, id)
	}
	return "SELECT " + strings.Join(arms, " OR "), args
}

func (o pruneOps) DeleteContact(ctx context.Context, c store.PrunedContact) error {
	if _, err := o.t.exec(ctx, "deleteContact", c.RowID); err != nil {
		return err
	}
	o.t.forgetContact(contactKey{c.Key.Platform, c.Key.Channel, c.Key.ID})
	return nil
}
