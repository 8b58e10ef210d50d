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

// DefaultEraseBatch bounds the rows of each record table (messages, statuses, receipts,
// files) that one erasure transaction deletes (Options.EraseBatch). SQLite has one
// writer: a person with a hundred thousand messages erased in one transaction would
// hold every delivery queued behind it for seconds. In batches, deliveries are
// committed between two of them (each batch is one operation of the writer, queued like
// a delivery). 250 rows of each kind take about 2.5 ms of the writer on a 2-core
// machine (make bench-erasure; docs/erasure-at-scale.md), of the order of a delivery's
// own p99.
const DefaultEraseBatch = 250

// Erase implements store.Store. It deletes the subject's messages, statuses, receipts and
// files in batches of at most Options.EraseBatch rows per table, then, in the last transaction,
// their contact rows and identity changes and the ledger entry. The contact rows and
// identity changes go last because they are what resolves the person's identifiers:
// until the last batch commits, every batch (and a run resumed after a crash) finds the
// same identifiers. Counts of the batches committed before a crash are kept under the
// request's keyed subject reference (erasure_progress), so the ledger entry and the
// counts returned are the request's whole, as when it ran in one transaction.
func (s *Store) Erase(ctx context.Context, req store.EraseRequest) (store.Counts, error) {
	if req.Subject.ID == "" {
		return store.Counts{}, errors.New("erase: empty subject")
	}
	var total store.Counts
	for {
		var batch, whole store.Counts
		var done bool
		var unref []string
		err := s.submitSealed(ctx, func(ctx context.Context, t *txn) error {
			var err error
			unref, err = t.deletingFiles(func() error {
				batch, whole, done, err = t.eraseBatch(ctx, req, s.opts.EraseBatch)
				return err
			})
			return err
		})
		if err != nil {
			return total, err
		}
		s.removeUnreferenced(ctx, unref)
		total.Add(batch)
		if done {
			if req.SubjectRef != "" {
				return whole, nil
			}
			return total, nil
		}
	}
}

// subjectWhere builds "(any of cols in ids) [AND +platform = ?] [AND +channel = ?]" with
// its arguments; an empty platform or channel matches every one and is left out of the
// SQL (an always-true "? = ”" arm keeps SQLite from using the indexes). The unary "+"
// keeps SQLite from answering platform = ? through the indexes that lead with the
// platform, which hold every row of a tenant; the identifier indexes find the person's
// few rows (a MULTI-INDEX OR, one index per column).
func subjectWhere(platform meta.Platform, channel string, ids []string, cols ...string) (string, []any) {
	ph := strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")
	var conds []string
	var args []any
	for _, c := range cols {
		conds = append(conds, c+" IN ("+ph+")")
		for _, id := range ids {
			args = append(args, id)
		}
	}
	where := "(" + strings.Join(conds, " OR ") + ")"
	if platform != "" {
		where += " AND +platform = ?"
		args = append(args, string(platform))
	}
	if channel != "" {
		where += " AND +channel = ?"
		args = append(args, channel)
	}
	return where, args
}

// eraseTable is a table erasure deletes from and the kind of record it holds.
type eraseTable struct {
	table string
	cols  []string
	scope store.Scope
	count func(*store.Counts) *int
	// files: the deletion returns the rows' content addresses (returningBlob), whose
	// bytes go after the commit.
	files bool
}

// batchedTables are deleted in bounded batches; the contact tables (contact rows,
// identity changes, lead attribution records) in the last one.
var (
	batchedTables = []eraseTable{
		{"messages", []string{"subject", "subject_alt"}, store.ScopeMessages, func(c *store.Counts) *int { return &c.Messages }, false},
		{"statuses", []string{"subject", "subject_alt"}, store.ScopeMessages, func(c *store.Counts) *int { return &c.Statuses }, false},
		{"receipts", []string{"subject"}, store.ScopeMessages, func(c *store.Counts) *int { return &c.Statuses }, false},
		{"files", []string{"subject", "subject_alt"}, store.ScopeFiles, func(c *store.Counts) *int { return &c.Files }, true},
	}
	contactTables = []eraseTable{
		{"contacts", []string{"subject", "wa_id", "user_id"}, store.ScopeContacts, func(c *store.Counts) *int { return &c.Contacts }, false},
		{"identity_changes", store.IdentityChangeCols, store.ScopeContacts, func(c *store.Counts) *int { return &c.Contacts }, false},
		// Lead attribution records are part of the person's contact record (as counted).
		{"leads", []string{"subject", "subject_alt"}, store.ScopeContacts, func(c *store.Counts) *int { return &c.Contacts }, false},
	}
)

// batchDelete is the statement deleting at most limit rows of t matching where.
func batchDelete(t eraseTable, where string) string {
	q := "DELETE FROM " + t.table + " WHERE id IN (SELECT id FROM " + t.table + " WHERE " + where + " LIMIT ?)"
	if t.files {
		q += returningBlob
	}
	return q
}

// lastDelete is the statement deleting every row of t matching where.
func lastDelete(t eraseTable, where string) string {
	return "DELETE FROM " + t.table + " WHERE " + where
}

const (
	sqlProgressRead = `SELECT contacts, messages, statuses, files, file_bytes FROM erasure_progress
		WHERE subject_ref = ? AND channel = ? AND scope = ?`
	sqlProgressAdd = `INSERT INTO erasure_progress(subject_ref, channel, scope, contacts, messages, statuses, files, file_bytes)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(subject_ref, channel, scope) DO UPDATE SET contacts = contacts + excluded.contacts,
			messages = messages + excluded.messages, statuses = statuses + excluded.statuses, files = files + excluded.files,
			file_bytes = file_bytes + excluded.file_bytes`
	sqlProgressDone  = `DELETE FROM erasure_progress WHERE subject_ref = ? AND channel = ? AND scope = ?`
	sqlInsertErasure = `INSERT INTO erasures(subject_ref, platform, channel, scope, requested_at, completed_at, contacts, messages, statuses, files, file_bytes)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// eraseBatch runs one transaction of Erase: it deletes up to limit rows of each batched
// table; when none of them had more, it also deletes the contact rows and identity
// changes and writes the ledger (done). batch is what this transaction deleted, whole
// the request's counts over every batch (set when done, with a subject reference).
func (t *txn) eraseBatch(ctx context.Context, req store.EraseRequest, limit int) (batch, whole store.Counts, done bool, err error) {
	ids, err := subjectIDs(ctx, t.tx, t.sl, t.s.mixed.Load(), req.Subject, req.Channel)
	if err != nil {
		return batch, whole, false, err
	}
	// del runs q and counts what it deleted; a batched delete that reached limit leaves
	// the erasure not done.
	del := func(tb eraseTable, q string, args []any, batched bool) error {
		var n int64
		if tb.files {
			rows, err := t.tx.QueryContext(ctx, q, args...)
			if err != nil {
				return fmt.Errorf("erase %s: %w", tb.table, err)
			}
			k, bytes, err := t.scanDeletedFiles(rows)
			if err != nil {
				return fmt.Errorf("erase %s: %w", tb.table, err)
			}
			n, batch.FileBytes = int64(k), batch.FileBytes+bytes
		} else {
			res, err := t.tx.ExecContext(ctx, q, args...)
			if err != nil {
				return fmt.Errorf("erase %s: %w", tb.table, err)
			}
			if n, err = res.RowsAffected(); err != nil {
				return fmt.Errorf("erase %s: %w", tb.table, err)
			}
		}
		*tb.count(&batch) += int(n)
		if batched && n >= int64(limit) {
			done = false
		}
		return nil
	}
	// Rows go by identifier: forget every cached contact, including what earlier requests
	// of this same group remembered (those rows may be among the erased).
	t.eraseCache = true
	clear(t.pending)
	done = true
	for _, tb := range batchedTables {
		if !req.Scope.Has(tb.scope) {
			continue
		}
		where, args := subjectWhere(req.Subject.Platform, req.Channel, ids, tb.cols...)
		if err := del(tb, batchDelete(tb, where), append(args, limit), true); err != nil {
			return batch, whole, false, err
		}
	}
	ref, channel, scope := req.SubjectRef, req.Channel, strings.Join(req.Scope.Names(), ",")
	if !done {
		if ref != "" {
			if _, err := t.tx.ExecContext(ctx, sqlProgressAdd, ref, channel, scope, batch.Contacts, batch.Messages, batch.Statuses, batch.Files, batch.FileBytes); err != nil {
				return batch, whole, false, fmt.Errorf("record erasure progress: %w", err)
			}
		}
		return batch, whole, false, nil
	}
	for _, tb := range contactTables {
		if !req.Scope.Has(tb.scope) {
			continue
		}
		where, args := subjectWhere(req.Subject.Platform, req.Channel, ids, tb.cols...)
		if err := del(tb, lastDelete(tb, where), args, false); err != nil {
			return batch, whole, false, err
		}
	}
	if ref == "" {
		return batch, batch, true, nil
	}
	// The batches committed before this one, in this run or a run that crashed.
	if err := t.tx.QueryRowContext(ctx, sqlProgressRead, ref, channel, scope).Scan(
		&whole.Contacts, &whole.Messages, &whole.Statuses, &whole.Files, &whole.FileBytes); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return batch, whole, false, fmt.Errorf("read erasure progress: %w", err)
	}
	whole.Add(batch)
	if _, err := t.tx.ExecContext(ctx, sqlProgressDone, ref, channel, scope); err != nil {
		return batch, whole, false, fmt.Errorf("clear erasure progress: %w", err)
	}
	_, err = t.tx.ExecContext(ctx, sqlInsertErasure, ref, string(req.Subject.Platform), nullable(channel),
		scope, unixMilli(req.RequestedAt), time.Now().UnixMilli(), whole.Contacts, whole.Messages, whole.Statuses, whole.Files, whole.FileBytes)
	if err != nil {
		return batch, whole, false, fmt.Errorf("write erasure ledger: %w", err)
	}
	return batch, whole, true, nil
}
