package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Export implements store.Store. It reads one snapshot on a reader connection, so it runs
// alongside the writer (WAL) and even from another process (the export command).
func (s *Store) Export(ctx context.Context, f store.Filter, emit func(store.Record) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin export: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	var ids []string
	if f.Subject != nil {
		if ids, err = subjectIDs(ctx, tx, *f.Subject, ""); err != nil {
			return err
		}
	}
	for _, tb := range store.Tables {
		q, args := exportQuery(tb, f.Subject, ids)
		if err := emitRows(ctx, tx, tb.Kind, q, args, emit); err != nil {
			return err
		}
	}
	if f.Subject == nil {
		return exportErasures(ctx, tx, emit)
	}
	return nil
}

func emitRows(ctx context.Context, tx *sql.Tx, kind, q string, args []any, emit func(store.Record) error) error {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("export %s: %w", kind, err)
	}
	defer rows.Close()
	for rows.Next() {
		var d []byte
		if kind == store.KindFile {
			d, err = store.ScanFileDoc(rows.Scan)
		} else {
			err = rows.Scan(&d)
		}
		if err != nil {
			return fmt.Errorf("export %s: %w", kind, err)
		}
		if err := emit(store.Record{Kind: kind, Doc: d}); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export %s: %w", kind, err)
	}
	return nil
}

func exportErasures(ctx context.Context, tx *sql.Tx, emit func(store.Record) error) error {
	rows, err := tx.QueryContext(ctx, `SELECT subject_ref, platform, COALESCE(channel, ''), COALESCE(scope, ''), requested_at, completed_at,
		contacts, messages, statuses, files, file_bytes FROM erasures ORDER BY id`)
	if err != nil {
		return fmt.Errorf("export erasures: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e store.Erasure
		var platform, scope string
		var req sql.NullInt64
		var done int64
		if err := rows.Scan(&e.SubjectRef, &platform, &e.Channel, &scope, &req, &done,
			&e.Counts.Contacts, &e.Counts.Messages, &e.Counts.Statuses, &e.Counts.Files, &e.Counts.FileBytes); err != nil {
			return fmt.Errorf("export erasures: %w", err)
		}
		e.Platform = meta.Platform(platform)
		if scope != "" {
			e.Scope = strings.Split(scope, ",")
		}
		if req.Valid {
			e.RequestedAt = time.UnixMilli(req.Int64).UTC()
		}
		e.CompletedAt = time.UnixMilli(done).UTC()
		d, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode erasure: %w", err)
		}
		if err := emit(store.Record{Kind: store.KindErasure, Doc: d}); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export erasures: %w", err)
	}
	return nil
}

// exportQuery reads a table's documents: all of them, or those of a subject's ids.
func exportQuery(tb store.Table, subject *store.Subject, ids []string) (string, []any) {
	cols := "doc"
	if tb.Kind == store.KindFile {
		cols = store.FileExportColumns
	}
	if subject == nil {
		return "SELECT " + cols + " FROM " + tb.Name + " ORDER BY id", nil
	}
	where, args := subjectWhere(subject.Platform, "", ids, tb.SubjectCols...)
	return "SELECT " + cols + " FROM " + tb.Name + " WHERE " + where + " ORDER BY id", args
}
