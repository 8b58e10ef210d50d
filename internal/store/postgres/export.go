package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
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
	z, err := s.sealer()
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
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
		if ids, err = subjectIDs(ctx, tx, z, *f.Subject, ""); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	for _, tb := range store.Tables {
		q, args := exportQuery(tb, f.Subject, ids)
		if err := emitRows(ctx, tx, z, tb, q, args, emit); err != nil {
			return err
		}
	}
	if f.Subject == nil {
		return exportErasures(ctx, tx, emit)
	}
	return nil
}

func emitRows(ctx context.Context, tx pgx.Tx, z sealer, tb store.Table, q string, args []any, emit func(store.Record) error) error {
	kind := tb.Kind
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("export %s: %w", kind, err)
	}
	defer rows.Close()
	n := len(sealKeys[tb.Name])
	for rows.Next() {
		var d []byte // a fresh slice per row: emit may keep it
		if kind == store.KindFile {
			d, err = scanFileDoc(z, rows.Scan)
		} else {
			d, err = scanDoc(z, tb.Name, n, rows.Scan)
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

// sealKeys are the columns of each table's unique key, in the order its documents
// are sealed with (seal.go): what opening a document needs.
var sealKeys = map[string][]string{
	"contacts":         {"platform", "channel", "subject"},
	"messages":         {"platform", "message_id"},
	"statuses":         {"platform", "message_id"},
	"identity_changes": {"platform", "message_id"},
	"receipts":         {"platform", "channel", "subject", "state"},
	"files":            {"platform", "message_id", "idx::text"},
	"leads":            {"platform", "lead_id"},
}

// keyColumns are sealKeys of table as select expressions (k1, k2, ...) and their names.
func keyColumns(table string) (cols, names string) {
	for i, c := range sealKeys[table] {
		k := "k" + strconv.Itoa(i+1)
		cols += ", " + c + " AS " + k
		names += ", " + k
	}
	return cols, names
}

// scanDoc reads a row of doc and n key columns and opens the document.
func scanDoc(z sealer, table string, n int, scan func(dest ...any) error) ([]byte, error) {
	var stored string
	key := make([]string, n)
	dest := []any{&stored}
	for i := range key {
		dest = append(dest, &key[i])
	}
	if err := scan(dest...); err != nil {
		return nil, err
	}
	return z.OpenDoc(stored, table, key...)
}

// fileExportColumns are store.FileExportColumns, the sealed content and the key.
const fileExportColumns = store.FileExportColumns + `, COALESCE(content, '') AS content`

// scanFileDoc is store.ScanFileDoc over fileExportColumns and the key: the document
// opened, and the stored bytes' SHA-256 that of the content, not its address.
func scanFileDoc(z sealer, scan func(dest ...any) error) ([]byte, error) {
	var doc, content string
	var st store.FileState
	var mimeType string
	key := make([]string, 3)
	if err := scan(&doc, &st.State, &st.FailReason, &st.StoredSHA256, &st.Size, &mimeType, &content, &key[0], &key[1], &key[2]); err != nil {
		return nil, err
	}
	d, err := z.OpenDoc(doc, "files", key...)
	if err != nil {
		return nil, err
	}
	if st.StoredSHA256, err = storedSHA256(z, st.StoredSHA256, content, key); err != nil {
		return nil, err
	}
	return store.FileDoc(d, mimeType, st)
}

// storedSHA256 is the hex SHA-256 of a file's stored bytes: the sha256 column in a
// clear store, the sealed content when the column holds the content address.
func storedSHA256(z sealer, column, content string, key []string) (string, error) {
	if !store.IsHashedID(column) {
		return column, nil
	}
	sum, err := z.OpenDoc(content, contentIdentity, key...)
	if err != nil {
		return "", fmt.Errorf("open file content hash: %w", err)
	}
	return string(sum), nil
}

// exportQuery reads a table's documents: all of them, or those of a subject's ids.
func exportQuery(tb store.Table, subject *store.Subject, ids []string) (string, []any) {
	cols, names := "doc", "doc"
	if tb.Kind == store.KindFile {
		cols, names = fileExportColumns, store.FileExportNames+", content"
	}
	kc, kn := keyColumns(tb.Name)
	cols, names = cols+kc, names+kn
	if subject == nil {
		return "SELECT " + cols + " FROM " + tb.Name + " ORDER BY id", nil
	}
	// Found first, then sorted: "ORDER BY id" alone lets the planner walk the primary
	// key over the whole table, filtering, to save sorting a person's few rows.
	where, args := scopeWhere(subject.Platform, "", ids, tb.SubjectCols...)
	return "WITH found AS MATERIALIZED (SELECT id, " + cols + " FROM " + tb.Name + " WHERE " + where + ") SELECT " + names + " FROM found ORDER BY id", args
}
