package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Export implements store.Store. It reads one snapshot: a REPEATABLE READ transaction
// sees the database as of its first statement for all of its statements, so a commit
// landing between two tables' queries shows in neither, as with SQLite's read
// transaction. Read-only, it takes no locks that writers wait for.
func (s *Store) Export(ctx context.Context, f store.Filter, emit func(store.Record) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.inflight.Done()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin export: %w", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }() // read-only: nothing to commit
	var ids []string
	if f.Subject != nil {
		if ids, err = subjectIDs(ctx, tx, *f.Subject, ""); err != nil {
			return fmt.Errorf("export: %w", err)
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

func emitRows(ctx context.Context, tx pgx.Tx, kind, q string, args []any, emit func(store.Record) error) error {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("export %s: %w", kind, err)
	}
	defer rows.Close()
	for rows.Next() {
		var d []byte // a fresh slice per row: emit may keep it
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

// exportErasures builds the ledger's documents from its columns, as the SQLite backend
// does, so both print the same bytes.
func exportErasures(ctx context.Context, tx pgx.Tx, emit func(store.Record) error) error {
	rows, err := tx.Query(ctx, `SELECT subject_ref, platform, COALESCE(channel, ''), COALESCE(scope, ''), requested_at, completed_at,
		contacts, messages, statuses, files, file_bytes FROM erasures ORDER BY id`)
	if err != nil {
		return fmt.Errorf("export erasures: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e store.Erasure
		var platform, scope string
		var req *int64
		var done int64
		if err := rows.Scan(&e.SubjectRef, &platform, &e.Channel, &scope, &req, &done,
			&e.Counts.Contacts, &e.Counts.Messages, &e.Counts.Statuses, &e.Counts.Files, &e.Counts.FileBytes); err != nil {
			return fmt.Errorf("export erasures: %w", err)
		}
		e.Platform = meta.Platform(platform)
		if scope != "" {
			e.Scope = strings.Split(scope, ",")
		}
		if req != nil {
			e.RequestedAt = time.UnixMilli(*req).UTC()
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
	cols, names := "doc", "doc"
	if tb.Kind == store.KindFile {
		cols, names = store.FileExportColumns, store.FileExportNames
	}
	if subject == nil {
		return "SELECT " + cols + " FROM " + tb.Name + " ORDER BY id", nil
	}
	// Found first, then sorted: "ORDER BY id" alone lets the planner walk the primary
	// key over the whole table, filtering, to save sorting a person's few rows.
	where, args := scopeWhere(subject.Platform, "", ids, tb.SubjectCols...)
	return "WITH found AS MATERIALIZED (SELECT id, " + cols + " FROM " + tb.Name + " WHERE " + where + ") SELECT " + names + " FROM found ORDER BY id", args
}
