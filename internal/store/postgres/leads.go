package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/docenc"
)

// leadsSchema is the SQLite backend's leads table (store/leads.go), column for column.
// token holds a notification token, a credential: it is never part of doc, which is
// what export prints.
const leadsSchema = `
CREATE TABLE IF NOT EXISTS leads (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	platform    TEXT NOT NULL,
	lead_id     TEXT NOT NULL,
	channel     TEXT NOT NULL,
	subject     TEXT NOT NULL,
	subject_alt TEXT,
	ts          BIGINT,
	token       TEXT,
	doc         TEXT NOT NULL
);
` + store.LeadIndexes

const (
	// Leads are inserted in key order with ids allocated beforehand in delivery order, as
	// messages are (see apply): an export lists them as SQLite's does.
	sqlAllocateLeadIDs = `SELECT ARRAY(SELECT nextval(pg_get_serial_sequence('leads', 'id')) FROM generate_series(1, $1))`
	sqlInsertLead      = `INSERT INTO leads(id, platform, lead_id, channel, subject, subject_alt, ts, token, doc) OVERRIDING SYSTEM VALUE
		VALUES ($9, $1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (platform, lead_id) DO NOTHING`
)

// insertLeads stores lead attribution records once per id, in key order: two deliveries
// carrying the same leads in different orders would otherwise each insert one and wait
// for the other's (see apply).
func insertLeads(ctx context.Context, tx pgx.Tx, z sealer, leads []meta.Lead, res *store.CommitResult) error {
	if len(leads) == 0 {
		return nil
	}
	var ids []int64
	if err := tx.QueryRow(ctx, sqlAllocateLeadIDs, len(leads)).Scan(&ids); err != nil {
		return fmt.Errorf("allocate lead ids: %w", err)
	}
	b := &pgx.Batch{}
	for _, i := range byKey(len(leads), func(i int) string { return messageKey(leads[i].Platform, z.leadID(leads[i].ID)) }) {
		l := &leads[i]
		enc, err := docenc.Encode(l)
		if err != nil {
			return err
		}
		platform, id := keyText(string(l.Platform)), z.leadID(l.ID)
		d, err := z.seal(enc, "leads", platform, id)
		if err != nil {
			return err
		}
		// The token is a credential: sealed on its own (never part of doc).
		var token any
		if l.Token != "" {
			if token, err = z.SealDoc([]byte(keyText(string(l.Token))), tokenIdentity, platform, id); err != nil {
				return err
			}
		}
		b.Queue(sqlInsertLead, platform, id, keyText(l.Channel), z.subject(l.Subject),
			z.nullable(store.PurposeSubject, l.SubjectAlt), unixMilli(l.Timestamp), token, d, ids[i]).Exec(func(ct pgconn.CommandTag) error {
			res.LeadsNew += int(ct.RowsAffected())
			return nil
		})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("insert leads: %w", err)
	}
	return nil
}

// Retention's statements for leads (listed in plans.go). HasLeads asks one EXISTS per
// identifier column, with platform and channel as in scopeWhere, for the reason given
// at sqlPruneHasRecords.
const (
	sqlPruneAgedLeads = `DELETE FROM leads WHERE id IN
		(SELECT id FROM leads WHERE ts < $1 ORDER BY ts LIMIT $2 FOR UPDATE SKIP LOCKED)
		RETURNING platform, lead_id, channel, subject, COALESCE(subject_alt, '')`
	sqlPruneHasLeads = `SELECT
		EXISTS (SELECT 1 FROM leads WHERE subject = ANY($3) AND platform IS NOT DISTINCT FROM $1 AND channel IS NOT DISTINCT FROM $2)
		OR EXISTS (SELECT 1 FROM leads WHERE subject_alt = ANY($3) AND platform IS NOT DISTINCT FROM $1 AND channel IS NOT DISTINCT FROM $2)`
)

func (o *pruneOps) DeleteAgedLeads(ctx context.Context, before time.Time, limit int) ([]store.PrunedRecord, error) {
	return o.deleteReturning(ctx, sqlPruneAgedLeads, before.UnixMilli(), limit)
}

func (o *pruneOps) HasLeads(ctx context.Context, platform meta.Platform, channel string, ids []string) (bool, error) {
	var left bool
	err := o.tx.QueryRow(ctx, sqlPruneHasLeads, string(platform), channel, ids).Scan(&left)
	return left, err
}

// LeadToken implements store.Store.
func (s *Store) LeadToken(ctx context.Context, platform meta.Platform, id string) (meta.Secret, error) {
	z, err := s.sealer()
	if err != nil {
		return "", fmt.Errorf("read lead token: %w", err)
	}
	if err := s.enter(); err != nil {
		return "", err
	}
	defer s.inflight.Done()
	var tok *string
	var stored string
	ids := []string{z.leadID(id)}
	if z.mixed {
		ids = append(ids, keyText(id))
	}
	err = s.pool.QueryRow(ctx, `SELECT token, lead_id FROM leads WHERE platform = $1 AND lead_id = ANY($2) LIMIT 1`,
		keyText(string(platform)), ids).Scan(&tok, &stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read lead token: %w", err)
	}
	if tok == nil {
		return "", nil
	}
	t, err := z.OpenDoc(*tok, tokenIdentity, keyText(string(platform)), stored)
	if err != nil {
		return "", fmt.Errorf("read lead token: %w", err)
	}
	return meta.Secret(t), nil
}
