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
	"github.com/omniflowcrm/omniflow-operator/internal/store/docenc"
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
}

// insertLeads stores lead attribution records once per id: a redelivery changes nothing.
func (t *txn) insertLeads(ctx context.Context, leads []meta.Lead, res *store.CommitResult) error {
	for i := range leads {
		l := &leads[i]
		d, err := docenc.Encode(l)
		if err != nil {
			return err
		}
		n, err := t.exec(ctx, "insertLead", string(l.Platform), l.ID, l.Channel, l.Subject, nullable(l.SubjectAlt),
			unixMilli(l.Timestamp), nullable(string(l.Token)), d)
		if err != nil {
			return err
		}
		res.LeadsNew += int(n)
	}
	return nil
}

func (o pruneOps) DeleteAgedLeads(ctx context.Context, before time.Time, limit int) ([]store.PrunedRecord, error) {
	return o.deleteReturning(ctx, `DELETE FROM leads WHERE id IN
		(SELECT id FROM leads WHERE ts < ? ORDER BY ts LIMIT ?)
		RETURNING platform, lead_id, channel, subject, COALESCE(subject_alt, '')`, before.UnixMilli(), limit)
}

func (o pruneOps) HasLeads(ctx context.Context, platform meta.Platform, channel string, ids []string) (bool, error) {
	in := "(" + strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",") + ")"
	args := make([]any, 0, 2*len(ids)+4)
	for range 2 {
		for _, id := range ids {
			args = append(args, id)
		}
		args = append(args, string(platform), channel)
	}
	var left bool
	err := o.t.tx.QueryRowContext(ctx, `SELECT
		EXISTS (SELECT 1 FROM leads WHERE subject IN `+in+` AND +platform = ? AND +channel = ?)
		OR EXISTS (SELECT 1 FROM leads WHERE subject_alt IN `+in+` AND +platform = ? AND +channel = ?)`, args...).Scan(&left)
	return left, err
}

// LeadToken implements store.Store, on a reader connection.
func (s *Store) LeadToken(ctx context.Context, platform meta.Platform, id string) (meta.Secret, error) {
	var tok sql.NullString
	err := s.r.QueryRowContext(ctx, `SELECT token FROM leads WHERE platform = ? AND lead_id = ?`, string(platform), id).Scan(&tok)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read lead token: %w", err)
	}
	return meta.Secret(tok.String), nil
}
