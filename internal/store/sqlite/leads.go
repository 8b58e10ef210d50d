package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// leadsSchema is the table of lead attribution records (store/leads.go). token holds a
// notification token, a credential: it is never part of doc, which is what export
// prints.
const leadsSchema = `
CREATE TABLE IF NOT EXISTS leads (
	id          INTEGER PRIMARY KEY,
	platform    TEXT NOT NULL,
	lead_id     TEXT NOT NULL,
	channel     TEXT NOT NULL,
	subject     TEXT NOT NULL,
	subject_alt TEXT,
	ts          INTEGER,
	token       TEXT,
	doc         TEXT NOT NULL
);
` + store.LeadIndexes

func init() {
	statements["insertLead"] = `INSERT INTO leads(platform, lead_id, channel, subject, subject_alt, ts, token, doc)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(platform, lead_id) DO NOTHING`
	statements["pruneAgedLeads"] = sqlPruneAgedLeads
}

// sqlPruneAgedLeads is retention's statement for leads (listed in plans.go).
const sqlPruneAgedLeads = `DELETE FROM leads WHERE id IN
		(SELECT id FROM leads WHERE ts < ? ORDER BY ts LIMIT ?)
		RETURNING platform, lead_id, channel, subject, COALESCE(subject_alt, '')`

// insertLeads stores lead attribution records once per id: a redelivery changes nothing.
func (t *txn) insertLeads(ctx context.Context, leads []meta.Lead, res *store.CommitResult) error {
	for i := range leads {
		l := &leads[i]
		id := t.sl.ID(store.PurposeLeadID, l.ID)
		if t.s.mixed.Load() && id != l.ID {
			if _, err := t.resealWhere(ctx, encTableOf("leads"), whereLead, []any{string(l.Platform), l.ID}, false); err != nil {
				return err
			}
		}
		d, err := seal(t.sl, l, "leads", string(l.Platform), id)
		if err != nil {
			return err
		}
		var token any
		if l.Token != "" {
			if token, err = t.sl.SealDoc([]byte(l.Token), leadTokenIdentity, string(l.Platform), id); err != nil {
				return err
			}
		}
		n, err := t.exec(ctx, "insertLead", string(l.Platform), id, l.Channel, t.sl.ID(store.PurposeSubject, l.Subject),
			nullable(t.sl.ID(store.PurposeSubject, l.SubjectAlt)), unixMilli(l.Timestamp), token, d)
		if err != nil {
			return err
		}
		res.LeadsNew += int(n)
	}
	return nil
}

func (o pruneOps) DeleteAgedLeads(ctx context.Context, before time.Time, limit int) ([]store.PrunedRecord, error) {
	return o.deleteReturning(ctx, "pruneAgedLeads", before.UnixMilli(), limit)
}

func (o pruneOps) HasLeads(ctx context.Context, platform meta.Platform, channel string, ids []string) (bool, error) {
	q, args := hasLeadsQuery(platform, channel, o.t.forms(ids))
	var left bool
	err := o.t.tx.QueryRowContext(ctx, q, args...).Scan(&left)
	return left, err
}

// hasLeadsQuery is HasLeads' statement.
func hasLeadsQuery(platform meta.Platform, channel string, ids []string) (string, []any) {
	in := "(" + strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",") + ")"
	args := make([]any, 0, 2*len(ids)+4)
	for range 2 {
		for _, id := range ids {
			args = append(args, id)
		}
		args = append(args, string(platform), channel)
	}
	return `SELECT
		EXISTS (SELECT 1 FROM leads WHERE subject IN ` + in + ` AND +platform = ? AND +channel = ?)
		OR EXISTS (SELECT 1 FROM leads WHERE subject_alt IN ` + in + ` AND +platform = ? AND +channel = ?)`, args
}

// sqlLeadNotifier reads a lead's token by its id, stored in either form (listed in plans.go).
const sqlLeadNotifier = `SELECT lead_id, token FROM leads WHERE platform = ? AND lead_id IN (?, ?)`

// LeadToken implements store.Store, on a reader connection. The record is looked up
// under its lead id's keyed hash and in clear (a store not yet wholly resealed).
func (s *Store) LeadToken(ctx context.Context, platform meta.Platform, id string) (meta.Secret, error) {
	sl, err := s.keys.Sealing()
	if err != nil {
		return "", err
	}
	var stored string
	var tok sql.NullString
	err = s.r.QueryRowContext(ctx, sqlLeadNotifier,
		string(platform), sl.ID(store.PurposeLeadID, id), id).Scan(&stored, &tok)
	if errors.Is(err, sql.ErrNoRows) || err == nil && !tok.Valid {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read lead token: %w", err)
	}
	b, err := sl.OpenDoc(tok.String, leadTokenIdentity, string(platform), stored)
	if err != nil {
		return "", fmt.Errorf("read lead token: %w", err)
	}
	return meta.Secret(b), nil
}
