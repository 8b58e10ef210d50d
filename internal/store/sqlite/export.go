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
// alongside the writer (WAL) and even from another process (the export command). With
// Keys every document is opened under its row's identity: the clear identifiers are
// the documents', never the hashed columns'.
func (s *Store) Export(ctx context.Context, f store.Filter, emit func(store.Record) error) error {
	sl, err := s.keys.Sealing()
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin export: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	var ids []string
	if f.Subject != nil {
		if ids, err = subjectIDs(ctx, tx, sl, s.mixed.Load(), *f.Subject, ""); err != nil {
			return err
		}
	}
	for _, tb := range store.Tables {
		q, args := exportQuery(tb, f.Subject, ids)
		if err := emitRows(ctx, tx, sl, tb, q, args, emit); err != nil {
			return err
		}
	}
	if f.Subject == nil {
		return exportErasures(ctx, tx, emit)
	}
	return nil
}

func emitRows(ctx context.Context, tx *sql.Tx, sl store.Sealing, tb store.Table, q string, args []any, emit func(store.Record) error) error {
	kind := tb.Kind
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("export %s: %w", kind, err)
	}
	defer rows.Close()
	key := make([]string, len(encTableOf(tb.Name).key))
	for rows.Next() {
		var stored string
		var fs store.FileState
		var mimeType, content string
		dest := make([]any, 0, len(key)+7)
		for i := range key {
			dest = append(dest, &key[i])
		}
		dest = append(dest, &stored)
		if kind == store.KindFile {
			dest = append(dest, &fs.State, &fs.FailReason, &fs.StoredSHA256, &fs.Size, &mimeType, &content)
		}
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("export %s: %w", kind, err)
		}
		d, err := sl.OpenDoc(stored, tb.Name, key...)
		if err != nil {
			return fmt.Errorf("export %s: %w", kind, err)
		}
		if kind == store.KindFile {
			if content != "" {
				sum, err := sl.OpenDoc(content, fileContentIdentity, key...)
				if err != nil {
					return fmt.Errorf("export %s: %w", kind, err)
				}
				fs.StoredSHA256 = string(sum)
			}
			if d, err = store.FileDoc(d, mimeType, fs); err != nil {
				return fmt.Errorf("export %s: %w", kind, err)
			}
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

// exportQuery reads a table's documents with their rows' keys (their identity): all
// of them, or those of a subject's ids.
func exportQuery(tb store.Table, subject *store.Subject, ids []string) (string, []any) {
	var keyCols []string
	for _, c := range encTableOf(tb.Name).key {
		keyCols = append(keyCols, c.name)
	}
	cols := strings.Join(keyCols, ", ") + ", doc"
	if tb.Kind == store.KindFile {
		cols = strings.Join(keyCols, ", ") + ", " + store.FileExportColumns + ", COALESCE(content, '')"
	}
	if subject == nil {
		return "SELECT " + cols + " FROM " + tb.Name + " ORDER BY id", nil
	}
	where, args := subjectWhere(subject.Platform, "", ids, tb.SubjectCols...)
	return "SELECT " + cols + " FROM " + tb.Name + " WHERE " + where + " ORDER BY id", args
}
