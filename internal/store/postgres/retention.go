package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// retentionSchema adds retention's columns to a database created before them (filled
// from the stored documents for the rows already there), then retention's indexes.
const retentionSchema = `
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = 'messages' AND column_name = 'reacts_to') THEN
		ALTER TABLE messages ADD COLUMN reacts_to TEXT;
		-- Sealed documents (which a store this old cannot hold) are skipped: they are no JSON.
		UPDATE messages SET reacts_to = (CASE WHEN doc LIKE '{%' THEN doc::jsonb END) -> 'reaction' ->> 'messageID'
			WHERE (CASE WHEN doc LIKE '{%' THEN doc::jsonb END) -> 'reaction' ->> 'messageID' IS NOT NULL;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = 'statuses' AND column_name = 'ts') THEN
		ALTER TABLE statuses ADD COLUMN ts BIGINT;
		UPDATE statuses SET ts = (extract(epoch FROM ((CASE WHEN doc LIKE '{%' THEN doc::jsonb END) ->> 'timestamp')::timestamptz) * 1000)::bigint
			WHERE (CASE WHEN doc LIKE '{%' THEN doc::jsonb END) ->> 'timestamp' IS NOT NULL;
	END IF;
END $$;
` + store.RetentionIndexes + store.SubjectIndexes

// Prune implements store.Store: one batch in one transaction. Rows are picked with SKIP
// LOCKED, so replicas pruning at the same time share the work instead of waiting for
// each other, and deliveries are never blocked for more than one batch.
func (s *Store) Prune(ctx context.Context, req store.PruneRequest) (store.Pruned, error) {
	if req.Limit <= 0 {
		return store.Pruned{}, store.ErrPruneLimit
	}
	if s.opts.ReadOnly {
		return store.Pruned{}, store.ErrReadOnly
	}
	if err := s.enter(); err != nil {
		return store.Pruned{}, err
	}
	defer s.inflight.Done()
	start := time.Now()
	var res store.Pruned
	learnt := map[int32]bool{}
	err := s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var err error
		res, err = store.PruneBatch(ctx, &pruneOps{tx: tx, l: newLocker(tx, learnt)}, req)
		return err
	})
	s.observe(start, err)
	if err != nil {
		return store.Pruned{}, fmt.Errorf("prune: %w", err)
	}
	return res, nil
}

// pruneOps are the PostgreSQL statements of store.PruneBatch. Every identifier they
// return or take is in its stored form (keyText).
type pruneOps struct {
	tx pgx.Tx
	l  *locker
}

var _ store.PruneOps = (*pruneOps)(nil)

const returningRecord = ` RETURNING platform, message_id, channel, subject, COALESCE(subject_alt, '')`

// Retention's statements (listed for the query-plan check in plans.go).
const (
	sqlPruneAgedMessages = `DELETE FROM messages WHERE id IN
		(SELECT id FROM messages WHERE ts < $1 ORDER BY ts LIMIT $2 FOR UPDATE SKIP LOCKED)` + returningRecord
	sqlPruneReactions = `DELETE FROM messages m USING unnest($1::text[], $2::text[]) AS t(platform, id)
		WHERE m.platform = t.platform AND m.reacts_to = t.id
		RETURNING m.platform, m.message_id, m.channel, m.subject, COALESCE(m.subject_alt, '')`
	sqlPruneIdentityChangesOf = `DELETE FROM identity_changes x USING unnest($1::text[], $2::text[]) AS t(platform, id)
		WHERE x.platform = t.platform AND x.message_id = t.id
		RETURNING x.platform, x.channel, COALESCE(x.old_wa_id, ''), COALESCE(x.old_user_id, ''), COALESCE(x.new_wa_id, ''), COALESCE(x.new_user_id, '')`
	sqlPruneAgedStatuses = `DELETE FROM statuses WHERE id IN
		(SELECT id FROM statuses WHERE ts < $1 ORDER BY ts LIMIT $2 FOR UPDATE SKIP LOCKED)` + returningRecord
	sqlPruneAgedReceipts = `DELETE FROM receipts WHERE id IN
		(SELECT id FROM receipts WHERE watermark < $1 ORDER BY watermark LIMIT $2 FOR UPDATE SKIP LOCKED)
		RETURNING platform, '', channel, subject, ''`
	sqlPruneContactsOf = `SELECT id, subject, COALESCE(wa_id, ''), COALESCE(user_id, '') FROM contacts
		WHERE platform = $1 AND channel = $2 AND (subject = $3 OR wa_id = $3 OR user_id = $3) ORDER BY id`
	// One EXISTS per identifier column: an OR of two columns needs a bitmap scan, which
	// the planner avoids for an EXISTS (it wants the first row early) in favour of an
	// index that leads with the platform, i.e. reading the tenant's rows until one
	// matches. Platform and channel as in scopeWhere.
	sqlPruneHasRecords = `SELECT
		EXISTS (SELECT 1 FROM messages WHERE subject = ANY($3) AND platform IS NOT DISTINCT FROM $1 AND channel IS NOT DISTINCT FROM $2)
		OR EXISTS (SELECT 1 FROM messages WHERE subject_alt = ANY($3) AND platform IS NOT DISTINCT FROM $1 AND channel IS NOT DISTINCT FROM $2)
		OR EXISTS (SELECT 1 FROM statuses WHERE subject = ANY($3) AND platform IS NOT DISTINCT FROM $1 AND channel IS NOT DISTINCT FROM $2)
		OR EXISTS (SELECT 1 FROM statuses WHERE subject_alt = ANY($3) AND platform IS NOT DISTINCT FROM $1 AND channel IS NOT DISTINCT FROM $2)
		OR EXISTS (SELECT 1 FROM files WHERE subject = ANY($3) AND platform IS NOT DISTINCT FROM $1 AND channel IS NOT DISTINCT FROM $2)
		OR EXISTS (SELECT 1 FROM files WHERE subject_alt = ANY($3) AND platform IS NOT DISTINCT FROM $1 AND channel IS NOT DISTINCT FROM $2)
		OR EXISTS (SELECT 1 FROM receipts WHERE subject = ANY($3) AND platform IS NOT DISTINCT FROM $1 AND channel IS NOT DISTINCT FROM $2)`
)

// pruneOfSQL deletes the rows of table (statuses, files) of the messages in two arrays.
func pruneOfSQL(table string) string {
	return `DELETE FROM ` + table + ` x USING unnest($1::text[], $2::text[]) AS t(platform, id)
		WHERE x.platform = t.platform AND x.message_id = t.id`
}

func (o *pruneOps) deleteReturning(ctx context.Context, q string, args ...any) ([]store.PrunedRecord, error) {
	rows, err := o.tx.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.PrunedRecord
	for rows.Next() {
		var r store.PrunedRecord
		var platform string
		if err := rows.Scan(&platform, &r.MessageID, &r.Channel, &r.Subject, &r.SubjectAlt); err != nil {
			return nil, err
		}
		r.Platform = meta.Platform(platform)
		out = append(out, r)
	}
	return out, rows.Err()
}

// keys are the messages' (platform, message id) as two arrays, for unnest.
func keys(msgs []store.PrunedRecord) (platforms, ids []string) {
	for _, m := range msgs {
		platforms = append(platforms, string(m.Platform))
		ids = append(ids, m.MessageID)
	}
	return platforms, ids
}

func (o *pruneOps) DeleteAgedMessages(ctx context.Context, before time.Time, limit int) ([]store.PrunedRecord, error) {
	return o.deleteReturning(ctx, sqlPruneAgedMessages, before.UnixMilli(), limit)
}

func (o *pruneOps) DeleteReactionsTo(ctx context.Context, msgs []store.PrunedRecord) ([]store.PrunedRecord, error) {
	platforms, ids := keys(msgs)
	return o.deleteReturning(ctx, sqlPruneReactions, platforms, ids)
}

func (o *pruneOps) deleteOf(ctx context.Context, table string, msgs []store.PrunedRecord) (int, error) {
	platforms, ids := keys(msgs)
	ct, err := o.tx.Exec(ctx, pruneOfSQL(table), platforms, ids)
	if err != nil {
		return 0, err
	}
	return int(ct.RowsAffected()), nil
}

func (o *pruneOps) DeleteStatusesOf(ctx context.Context, msgs []store.PrunedRecord) (int, error) {
	return o.deleteOf(ctx, "statuses", msgs)
}

// DeleteFilesOf deletes file records and, in the same transaction, the bytes no other
// record names.
func (o *pruneOps) DeleteFilesOf(ctx context.Context, msgs []store.PrunedRecord) (int, int64, error) {
	platforms, ids := keys(msgs)
	return deleteFiles(ctx, o.tx, pruneOfSQL("files")+returningBlob, platforms, ids)
}

func (o *pruneOps) DeleteIdentityChangesOf(ctx context.Context, msgs []store.PrunedRecord) (int, []store.Identity, error) {
	platforms, ids := keys(msgs)
	rows, err := o.tx.Query(ctx, sqlPruneIdentityChangesOf, platforms, ids)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	return store.ScanChangedIdentities(rows)
}

func (o *pruneOps) DeleteAgedStatuses(ctx context.Context, before time.Time, limit int) ([]store.PrunedRecord, error) {
	return o.deleteReturning(ctx, sqlPruneAgedStatuses, before.UnixMilli(), limit)
}

func (o *pruneOps) DeleteAgedReceipts(ctx context.Context, before time.Time, limit int) ([]store.PrunedRecord, error) {
	return o.deleteReturning(ctx, sqlPruneAgedReceipts, before.UnixMilli(), limit)
}

// LockIdentities takes the contact locks a delivery takes before it upserts a contact:
// a delivery linking a new message to one of these people either committed before (its
// message is seen) or waits, and then stores the contact afresh. The locks come after
// the rows this transaction deleted, the reverse of a delivery's order; a deadlock that
// closes is broken by the server and the batch is run again (inTx).
func (o *pruneOps) LockIdentities(ctx context.Context, ids []store.Identity) error {
	var ks []int32
	for _, id := range ids {
		ks = append(ks, contactLockKey(id.ID))
	}
	if len(o.l.held) == 0 {
		return o.l.first(ctx, ks)
	}
	return o.l.lock(ctx, ks)
}

func (o *pruneOps) ContactsOf(ctx context.Context, id store.Identity) ([]store.PrunedContact, error) {
	rows, err := o.tx.Query(ctx, sqlPruneContactsOf, string(id.Platform), id.Channel, id.ID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.PrunedContact
	for rows.Next() {
		c := store.PrunedContact{Key: id}
		var subject, waID, userID string
		if err := rows.Scan(&c.RowID, &subject, &waID, &userID); err != nil {
			return nil, err
		}
		c.Key.ID = subject
		c.IDs = store.AddIdentifiers(nil, map[string]bool{}, subject, waID, userID)
		out = append(out, c)
	}
	return out, rows.Err()
}

func (o *pruneOps) HasRecords(ctx context.Context, platform meta.Platform, channel string, ids []string) (bool, error) {
	var left bool
	err := o.tx.QueryRow(ctx, sqlPruneHasRecords, string(platform), channel, ids).Scan(&left)
	return left, err
}

func (o *pruneOps) DeleteContact(ctx context.Context, c store.PrunedContact) error {
	_, err := o.tx.Exec(ctx, sqlDeleteContact, c.RowID)
	return err
}
