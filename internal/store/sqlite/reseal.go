package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Encryption at rest (docs/encryption.md, store/seal.go). With Options.Keys every
// document is sealed under the record's identity (its table and the stored values of
// its unique key), every identifier the store searches by is kept as its keyed hash,
// and file bytes are sealed in chunks. The reseal pass (Reseal) brings what was
// stored in clear, or sealed under an older key version, to the active version.
//
// While a store opened with Keys may still hold identifiers in clear (it was written
// without Keys before, and no pass has completed since), it is "mixed": every write
// that finds a record by a clear identifier first converts the rows stored under it
// (convertMessage, resealWhere), and every read looks under both forms, so that a
// redelivery of a message stored in clear is still a duplicate and an erasure still
// finds rows stored in clear.

// encryptionSchema is the pass's state: one row. sealed_version is the version the
// last complete pass brought everything to (0: none); clear_ids is 1 while
// identifiers in clear may remain; target_version, tbl and after_id are the position
// of the pass in progress (the version it works toward, the table it is in, the last
// rowid it finished), so that it resumes there after a crash. compact is 1 once a
// pass over records stored in clear has sealed them all, until the database file has
// been rewritten (compactAfterMigration): until then the file may still hold clear
// remnants, and the store does not count as fully encrypted.
const encryptionSchema = `
CREATE TABLE IF NOT EXISTS encryption (
	id             INTEGER PRIMARY KEY CHECK (id = 1),
	sealed_version INTEGER NOT NULL DEFAULT 0,
	clear_ids      INTEGER NOT NULL DEFAULT 1,
	target_version INTEGER NOT NULL DEFAULT 0,
	tbl            TEXT NOT NULL DEFAULT '',
	after_id       INTEGER NOT NULL DEFAULT 0,
	compact        INTEGER NOT NULL DEFAULT 0,
	message_ids    INTEGER NOT NULL DEFAULT 0
);
`

// messageIDsColumn is the encryption table's column recording how the store hashes
// message ids (store.MessageIDForm); stores from before it get it with 0, undecided.
const messageIDsColumn = `ALTER TABLE encryption ADD COLUMN message_ids INTEGER NOT NULL DEFAULT 0`

// messageIDTables are the tables keyed by a message id.
var messageIDTables = []string{"messages", "statuses", "files", "identity_changes", "tombstones"}

// encCol is a column holding an identifier: hashed for purpose, or clear ("").
type encCol struct{ name, purpose string }

// encTable is how a record table is sealed: its unique key (the identity of its
// documents, in order) and its other identifier columns.
type encTable struct {
	name string
	key  []encCol
	ids  []encCol
	// byMessage: keyed by (platform, message_id, ...): rows in clear are converted
	// together with the other records of the same message (convertMessage).
	byMessage bool
	// token: leads.token is sealed as well; files: the stored bytes and their true
	// digest (content) are sealed as well.
	token, files bool
}

var (
	platformCol = encCol{"platform", ""}
	channelCol  = encCol{"channel", ""}
	msgIDCol    = encCol{"message_id", store.PurposeMessageID}
	subjectCols = []encCol{{"subject", store.PurposeSubject}, {"subject_alt", store.PurposeSubject}}
)

// encTables in the order the pass visits them: the contact rows and identity changes
// first, so that a record converted by the pass already finds its contact in hashed
// form (retention's contact check looks up the hashed values).
var encTables = []encTable{
	{name: "contacts", key: []encCol{platformCol, channelCol, {"subject", store.PurposeSubject}},
		ids: []encCol{{"wa_id", store.PurposeSubject}, {"user_id", store.PurposeSubject}}},
	{name: "identity_changes", key: []encCol{platformCol, msgIDCol},
		ids: []encCol{{"old_wa_id", store.PurposeSubject}, {"old_user_id", store.PurposeSubject},
			{"new_wa_id", store.PurposeSubject}, {"new_user_id", store.PurposeSubject}}},
	{name: "leads", key: []encCol{platformCol, {"lead_id", store.PurposeLeadID}}, ids: subjectCols, token: true},
	{name: "receipts", key: []encCol{platformCol, channelCol, {"subject", store.PurposeSubject}, {"state", ""}}},
	{name: "messages", key: []encCol{platformCol, msgIDCol}, ids: append(subjectCols[:2:2], encCol{"reacts_to", store.PurposeMessageID}), byMessage: true},
	{name: "statuses", key: []encCol{platformCol, msgIDCol}, ids: subjectCols, byMessage: true},
	{name: "files", key: []encCol{platformCol, msgIDCol, {"idx", ""}}, ids: subjectCols, byMessage: true, files: true},
}

func encTableOf(name string) encTable {
	for _, tb := range encTables {
		if tb.name == name {
			return tb
		}
	}
	panic("sqlite: no sealed table " + name)
}

// Identities of the values sealed beside a record's document.
const (
	leadTokenIdentity   = "leads-token"
	fileContentIdentity = "files-content"
)

// initEncryption creates the pass's state row of a store that has none (new, or from
// before encryption) and reads whether it is mixed. A new store opened with Keys is
// encrypted from its first record: nothing to pass over. A store opened without Keys
// may from now on hold clear records: no pass counts as complete any more.
func (s *Store) initEncryption() error {
	if _, err := s.w.Exec(encryptionSchema); err != nil {
		return fmt.Errorf("create encryption state: %w", err)
	}
	if has, err := hasColumn(s.w, "encryption", "message_ids"); err != nil {
		return fmt.Errorf("read encryption state: %w", err)
	} else if !has {
		if _, err := s.w.Exec(messageIDsColumn); err != nil {
			return fmt.Errorf("add the message id form to the encryption state: %w", err)
		}
	}
	var has bool
	if err := s.w.QueryRow(`SELECT EXISTS (SELECT 1 FROM encryption)`).Scan(&has); err != nil {
		return fmt.Errorf("read encryption state: %w", err)
	}
	switch {
	case !has:
		empty := true
		for _, tb := range append(encTables, encTable{name: "tombstones"}) {
			var rows bool
			if err := s.w.QueryRow(`SELECT EXISTS (SELECT 1 FROM ` + tb.name + `)`).Scan(&rows); err != nil {
				return fmt.Errorf("read encryption state: %w", err)
			}
			empty = empty && !rows
		}
		sealed, clearIDs := datakey.Version(0), 1
		if empty && s.keys.Enabled() {
			clearIDs = 0
			// Without the ring now the first pass, finding nothing to do, says so.
			if sl, err := s.keys.Sealing(); err == nil {
				sealed = sl.ActiveVersion()
			}
		}
		if _, err := s.w.Exec(`INSERT INTO encryption(id, sealed_version, clear_ids) VALUES (1, ?, ?)`, sealed, clearIDs); err != nil {
			return fmt.Errorf("write encryption state: %w", err)
		}
	case !s.keys.Enabled():
		if _, err := s.w.Exec(`UPDATE encryption SET sealed_version = 0, clear_ids = 1, target_version = 0, tbl = '', after_id = 0`); err != nil {
			return fmt.Errorf("write encryption state: %w", err)
		}
	}
	if err := s.loadMessageIDForm(s.w, true); err != nil {
		return err
	}
	return s.loadMixed(s.w)
}

// loadMessageIDForm gives the store's Keys the form its message ids are hashed in.
// A store records the form once: one that already holds hashed message ids (sealed
// before the grouped form existed) keeps the flat form, any other takes the form its
// Keys ask for (grouped unless a test asks otherwise). A read-only store (export)
// decides the same way without recording it.
func (s *Store) loadMessageIDForm(db *sql.DB, write bool) error {
	form := store.MessageIDsUnknown
	if has, err := hasColumn(db, "encryption", "message_ids"); err != nil {
		return fmt.Errorf("read encryption state: %w", err)
	} else if has {
		err := db.QueryRow(`SELECT message_ids FROM encryption`).Scan(&form)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read encryption state: %w", err)
		}
	}
	if form == store.MessageIDsUnknown {
		hashed, err := holdsHashedMessageIDs(db)
		if err != nil {
			return err
		}
		switch {
		case hashed:
			form = store.MessageIDsFlat
		case s.opts.Keys.MessageIDs() != store.MessageIDsUnknown:
			form = s.opts.Keys.MessageIDs()
		default:
			form = store.MessageIDsGrouped
		}
		if write {
			if _, err := db.Exec(`UPDATE encryption SET message_ids = ?`, form); err != nil {
				return fmt.Errorf("record the message id form: %w", err)
			}
		}
	}
	s.keys = s.opts.Keys.WithMessageIDs(form)
	return nil
}

// holdsHashedMessageIDs reports whether any table keyed by a message id holds one as a
// keyed hash. It reads every row of a store in clear, once in the store's life.
func holdsHashedMessageIDs(db *sql.DB) (bool, error) {
	for _, tb := range messageIDTables {
		var hashed bool
		err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM `+tb+` WHERE substr(message_id, 1, 2) = ?)`, store.HashedIDPrefix).Scan(&hashed)
		if err != nil {
			if strings.Contains(err.Error(), "no such table") {
				continue
			}
			return false, fmt.Errorf("read the message id form: %w", err)
		}
		if hashed {
			return true, nil
		}
	}
	return false, nil
}

// hasColumn reports whether table has column (false when the table does not exist).
func hasColumn(db *sql.DB, table, column string) (bool, error) {
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`, table, column).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

// loadMixed reads whether clear identifiers may remain (read-only stores too).
func (s *Store) loadMixed(db *sql.DB) error {
	var clearIDs bool
	err := db.QueryRow(`SELECT clear_ids FROM encryption`).Scan(&clearIDs)
	if err != nil && !errors.Is(err, sql.ErrNoRows) && !strings.Contains(err.Error(), "no such table") {
		return fmt.Errorf("read encryption state: %w", err)
	}
	// A store from before encryption (no state yet) may hold anything in clear.
	s.mixed.Store(s.keys.Enabled() && (err != nil || clearIDs))
	return nil
}

// passState is the encryption table's row.
type passState struct {
	sealed, target datakey.Version
	clearIDs       bool
	tbl            string
	after          int64
	compact        bool
}

func readPass(ctx context.Context, q rowQuerier) (passState, error) {
	var p passState
	err := q.QueryRowContext(ctx, `SELECT sealed_version, clear_ids, target_version, tbl, after_id, compact FROM encryption`).
		Scan(&p.sealed, &p.clearIDs, &p.target, &p.tbl, &p.after, &p.compact)
	if err != nil {
		return p, fmt.Errorf("read encryption state: %w", err)
	}
	return p, nil
}

// EncryptionState implements store.Resealer.
func (s *Store) EncryptionState(ctx context.Context) (store.EncryptionState, error) {
	st := store.EncryptionState{Encrypts: s.keys.Enabled()}
	if !st.Encrypts {
		return st, nil
	}
	sl, err := s.keys.Sealing()
	if err != nil {
		return st, err
	}
	st.ActiveVersion = sl.ActiveVersion()
	p, err := readPass(ctx, s.r)
	if err != nil {
		return st, err
	}
	if !p.clearIDs && !p.compact {
		st.SealedVersion = p.sealed
	}
	return st, nil
}

// Reseal implements store.Resealer: one operation of the writer, so deliveries
// commit between two calls. It visits the tables in encTables' order by rowid, then
// hashes the tombstones' message ids, and records where it got to in the same
// transaction.
func (s *Store) Reseal(ctx context.Context, limit int) (changed int, done bool, err error) {
	if !s.keys.Enabled() {
		return 0, true, nil
	}
	if limit <= 0 {
		limit = 1
	}
	var unref []string
	err = s.submitSealed(ctx, func(ctx context.Context, t *txn) error {
		changed, done = 0, false
		var err error
		unref, err = t.deletingFiles(func() error {
			changed, done, err = t.resealBatch(ctx, limit)
			return err
		})
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("reseal: %w", err)
	}
	if done {
		s.mixed.Store(false)
	}
	s.removeUnreferenced(ctx, unref)
	if done {
		if err := s.compactAfterMigration(ctx); err != nil {
			return changed, false, err
		}
	}
	return changed, done, nil
}

// compactAfterMigration rewrites the database file once a pass has sealed a store
// that held records in clear, if it has not been rewritten since. Sealing a record
// rewrites its row, but SQLite leaves what a page held before in the page's unused
// space when a page splits or a cell moves (secure_delete zeroes deleted cells, not
// those), and the pass's own WAL frames carry such pages: a copy of the file taken
// later would still show clear text. VACUUM builds every page anew from the live,
// sealed rows, and a TRUNCATE checkpoint then writes them over the old file, syncs
// it, and empties the WAL. It runs once per migration (the store's whole size, with
// deliveries held meanwhile), and is retried by the next Reseal if it fails.
func (s *Store) compactAfterMigration(ctx context.Context) error {
	p, err := readPass(ctx, s.r)
	if err != nil || !p.compact {
		return err
	}
	err = s.submitAlone(ctx, func(ctx context.Context, db *sql.DB) error {
		s.ckptMu.Lock()
		defer s.ckptMu.Unlock()
		if err := vacuumOnDisk(ctx, db, s.dir); err != nil {
			return err
		}
		if err := truncateWAL(ctx, db); err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, `UPDATE encryption SET compact = 0`); err != nil {
			return fmt.Errorf("record compaction: %w", err)
		}
		// The UPDATE's own frame is in the WAL now: fold it in too, so that the
		// record of the compaction is on disk when the caller hears of it.
		return truncateWAL(ctx, db)
	})
	if err != nil {
		return fmt.Errorf("compact the migrated store: %w", err)
	}
	return nil
}

// vacuumOnDisk runs VACUUM with its temporary copy of the database in dir, the
// store's own volume: the writer keeps temporary data in memory (temp_store=MEMORY),
// where VACUUM's copy would be as large as the store, and the worker's root file
// system, where the default temporary directory is, is read-only. SQLite's
// temporary directory is process-wide; the worker holds one store, and the setting
// is put back to the default afterwards.
func vacuumOnDisk(ctx context.Context, db *sql.DB, dir string) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	defer func() { _ = conn.Close() }() // returns the connection to the pool
	quoted := "'" + strings.ReplaceAll(dir, "'", "''") + "'"
	if _, err := conn.ExecContext(ctx, "PRAGMA temp_store_directory = "+quoted); err != nil {
		return fmt.Errorf("vacuum: temporary directory: %w", err)
	}
	defer func() { _, _ = conn.ExecContext(context.Background(), "PRAGMA temp_store_directory = ''") }()
	if _, err := conn.ExecContext(ctx, "PRAGMA temp_store = FILE"); err != nil {
		return fmt.Errorf("vacuum: temporary store: %w", err)
	}
	defer func() { _, _ = conn.ExecContext(context.Background(), "PRAGMA temp_store = MEMORY") }()
	if _, err := conn.ExecContext(ctx, "VACUUM"); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	return nil
}

// truncateWAL checkpoints the whole WAL into the database, syncs it and truncates the
// WAL to nothing; a reader still using old frames makes it fail (busy), to be retried.
func truncateWAL(ctx context.Context, db *sql.DB) error {
	var busy, log, done int64
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &log, &done); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if busy != 0 {
		return fmt.Errorf("checkpoint: readers still use the WAL (%d of %d frames copied)", done, log)
	}
	return nil
}

func (t *txn) resealBatch(ctx context.Context, limit int) (int, bool, error) {
	p, err := readPass(ctx, t.tx)
	if err != nil {
		return 0, false, err
	}
	active := t.sl.ActiveVersion()
	if p.sealed == active && !p.clearIDs {
		return 0, true, nil
	}
	if p.target != active {
		// A new pass, or a rotation during one: start over toward the active version.
		p.target, p.tbl, p.after = active, encTables[0].name, 0
	}
	changed, examined := 0, 0
	for p.tbl != "" && changed < limit && examined < 8*limit && t.resealedBytes < resealBytesPerBatch {
		if p.tbl == "tombstones" {
			n, err := t.hashTombstones(ctx, limit-changed)
			if err != nil {
				return changed, false, err
			}
			changed += n
			if n < limit {
				p.tbl = ""
			}
			continue
		}
		tb := encTableOf(p.tbl)
		rows, err := t.tx.QueryContext(ctx, tableSQL("SELECT id FROM %s WHERE id > ? ORDER BY id LIMIT ?", tb.name), p.after, limit-changed)
		if err != nil {
			return changed, false, fmt.Errorf("reseal %s: %w", tb.name, err)
		}
		ids, err := scanIDs(rows)
		if err != nil {
			return changed, false, fmt.Errorf("reseal %s: %w", tb.name, err)
		}
		if len(ids) == 0 {
			p.tbl, p.after = nextTable(tb.name), 0
			continue
		}
		for _, id := range ids {
			n, err := t.resealWhere(ctx, tb, "id = ?", []any{id}, false)
			if err != nil {
				return changed, false, err
			}
			changed += n
			examined++
			p.after = id
			if t.resealedBytes >= resealBytesPerBatch {
				break
			}
		}
	}
	done := p.tbl == ""
	if done {
		// A pass over records that were stored in clear leaves the file to rewrite.
		p.compact = p.compact || p.clearIDs
		p.sealed, p.clearIDs, p.target, p.after = p.target, false, 0, 0
	}
	if _, err := t.tx.ExecContext(ctx, `UPDATE encryption SET sealed_version = ?, clear_ids = ?, target_version = ?, tbl = ?, after_id = ?, compact = ?`,
		p.sealed, p.clearIDs, p.target, p.tbl, p.after, p.compact); err != nil {
		return changed, false, fmt.Errorf("record reseal position: %w", err)
	}
	return changed, done, nil
}

// resealBytesPerBatch bounds the file bytes one reseal batch seals: sealing runs in the
// writer's transaction (the rename must commit with the record), so a batch holding many
// large files would hold deliveries back. A file larger than this is one batch alone.
const resealBytesPerBatch = 16 << 20

func nextTable(name string) string {
	for i, tb := range encTables {
		if tb.name == name && i+1 < len(encTables) {
			return encTables[i+1].name
		}
	}
	return "tombstones"
}

func scanIDs(rows *sql.Rows) ([]int64, error) {
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// hashTombstones hashes up to limit message ids of tombstones still in clear.
func (t *txn) hashTombstones(ctx context.Context, limit int) (int, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT platform, message_id FROM tombstones WHERE substr(message_id, 1, 2) <> ? LIMIT ?`,
		store.HashedIDPrefix, limit)
	if err != nil {
		return 0, fmt.Errorf("reseal tombstones: %w", err)
	}
	var keys [][2]string
	for rows.Next() {
		var k [2]string
		if err := rows.Scan(&k[0], &k[1]); err != nil {
			rows.Close()
			return 0, fmt.Errorf("reseal tombstones: %w", err)
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("reseal tombstones: %w", err)
	}
	for _, k := range keys {
		if err := t.hashTombstone(ctx, k[0], k[1]); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

func (t *txn) hashTombstone(ctx context.Context, platform, clearID string) error {
	h := t.sl.ID(store.PurposeMessageID, clearID)
	if h == clearID {
		return nil
	}
	if _, err := t.tx.ExecContext(ctx, `UPDATE OR IGNORE tombstones SET message_id = ? WHERE platform = ? AND message_id = ?`, h, platform, clearID); err != nil {
		return fmt.Errorf("reseal tombstones: %w", err)
	}
	// Ignored: the hashed tombstone exists already.
	if _, err := t.tx.ExecContext(ctx, `DELETE FROM tombstones WHERE platform = ? AND message_id = ?`, platform, clearID); err != nil {
		return fmt.Errorf("reseal tombstones: %w", err)
	}
	return nil
}

// convertMessage brings every record stored under a message id in clear (the
// message, its statuses, its files, its tombstone, the reactions to it) to the
// hashed form, in one go: retention and unsends find a message's records by the
// stored message id, which must agree among them.
func (t *txn) convertMessage(ctx context.Context, platform, clearID string) error {
	if clearID == "" || store.IsHashedID(clearID) {
		return nil
	}
	for _, name := range []string{"messages", "statuses", "files"} {
		if _, err := t.resealWhere(ctx, encTableOf(name), whereMessage, []any{platform, clearID}, true); err != nil {
			return err
		}
	}
	if _, err := t.tx.ExecContext(ctx, sqlConvertReacts,
		t.sl.ID(store.PurposeMessageID, clearID), platform, clearID); err != nil {
		return fmt.Errorf("convert reactions: %w", err)
	}
	return t.hashTombstone(ctx, platform, clearID)
}

// mixedConvert is convertMessage while the store is mixed, else nothing. It leaves
// file bytes as they are (the pass seals them): a delivery's transaction must not
// seal a large file.
func (t *txn) mixedConvert(ctx context.Context, platform, clearID string) error {
	if !t.s.mixed.Load() {
		return nil
	}
	t.keepBlobs = true
	defer func() { t.keepBlobs = false }()
	return t.convertMessage(ctx, platform, clearID)
}

// resealWhere brings the rows of tb matching where to the active version with every
// identifier hashed, and reports how many it changed. A row whose message id is in
// clear takes its message's other records along (convertMessage) unless inGroup.
func (t *txn) resealWhere(ctx context.Context, tb encTable, where string, args []any, inGroup bool) (int, error) {
	rows, err := t.tx.QueryContext(ctx, resealSelect(tb, where), args...)
	if err != nil {
		return 0, fmt.Errorf("reseal %s: %w", tb.name, err)
	}
	var found []storedRow
	for rows.Next() {
		r := storedRow{vals: make([]string, len(tb.key)+len(tb.ids))}
		dest := []any{&r.id}
		for i := range r.vals {
			dest = append(dest, &r.vals[i])
		}
		dest = append(dest, &r.doc)
		if tb.token {
			dest = append(dest, &r.token)
		}
		if tb.files {
			dest = append(dest, &r.addr, &r.content)
		}
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return 0, fmt.Errorf("reseal %s: %w", tb.name, err)
		}
		found = append(found, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("reseal %s: %w", tb.name, err)
	}
	n := 0
	for _, r := range found {
		if tb.byMessage && !inGroup && !store.IsHashedID(r.vals[1]) {
			if err := t.convertMessage(ctx, r.vals[0], r.vals[1]); err != nil {
				return n, err
			}
			n++
			continue
		}
		changed, err := t.resealRow(ctx, tb, r)
		if err != nil {
			return n, fmt.Errorf("reseal %s: %w", tb.name, err)
		}
		if changed {
			n++
		}
	}
	return n, nil
}

// resealSelect is resealWhere's query: the rows of tb matching where, as storedRow.
func resealSelect(tb encTable, where string) string {
	cols := []string{"id"}
	for _, c := range append(tb.key[:len(tb.key):len(tb.key)], tb.ids...) {
		cols = append(cols, "COALESCE("+c.name+", '')")
	}
	cols = append(cols, "doc")
	if tb.token {
		cols = append(cols, "COALESCE(token, '')")
	}
	if tb.files {
		cols = append(cols, "COALESCE(sha256, '')", "COALESCE(content, '')")
	}
	return tableSQL("SELECT %s FROM %s WHERE %s", strings.Join(cols, ", "), tb.name, where)
}

// Where clauses by which a mixed store finds the rows stored under a clear
// identifier (listed for the query-plan check in plans.go).
const (
	whereMessage     = "platform = ? AND message_id = ?"
	whereLead        = "platform = ? AND lead_id = ?"
	whereReceipts    = "platform = ? AND channel = ? AND subject = ?"
	sqlConvertReacts = `UPDATE messages SET reacts_to = ? WHERE platform = ? AND reacts_to = ?`
)

// storedRow is a row as resealWhere reads it: the key's and identifier columns'
// stored values in encTable order.
type storedRow struct {
	id            int64
	vals          []string
	doc, token    string
	addr, content string
}

// hashed is the stored form of an identifier column's value under the active ring.
func (t *txn) hashed(c encCol, v string) string {
	if c.purpose == "" || v == "" || store.IsHashedID(v) {
		return v
	}
	return t.sl.ID(c.purpose, v)
}

func (t *txn) resealRow(ctx context.Context, tb encTable, r storedRow) (bool, error) {
	active := t.sl.ActiveVersion()
	cols := append(tb.key[:len(tb.key):len(tb.key)], tb.ids...)
	newVals := make([]string, len(cols))
	need := false
	for i, c := range cols {
		newVals[i] = t.hashed(c, r.vals[i])
		need = need || newVals[i] != r.vals[i]
	}
	oldKey, newKey := r.vals[:len(tb.key)], newVals[:len(tb.key)]
	stale := func(stored string) bool {
		v, err := store.DocVersion(stored)
		return err != nil || v != active
	}
	need = need || stale(r.doc) || tb.token && r.token != "" && stale(r.token)
	var blobChanged bool
	var newAddr, newContent string
	blobs := tb.files && r.addr != "" && !t.keepBlobs
	if blobs {
		var err error
		newAddr, newContent, blobChanged, err = t.resealBlob(r, oldKey, newKey)
		if err != nil {
			return false, err
		}
		need = need || newAddr != r.addr || newContent != r.content
	}
	if !need {
		return blobChanged, nil
	}
	doc, err := t.sl.OpenDoc(r.doc, tb.name, oldKey...)
	if err != nil {
		return false, err
	}
	sealed, err := sealDoc(t.sl, doc, tb.name, newKey...)
	if err != nil {
		return false, err
	}
	set := make([]string, 0, len(cols)+4)
	args := make([]any, 0, len(cols)+5)
	for i, c := range cols {
		if c.purpose != "" {
			set = append(set, c.name+" = ?")
			args = append(args, nullable(newVals[i]))
		}
	}
	set = append(set, "doc = ?")
	args = append(args, sealed)
	if tb.token && r.token != "" {
		tok, err := t.sl.OpenDoc(r.token, leadTokenIdentity, oldKey...)
		if err != nil {
			return false, err
		}
		sealedTok, err := t.sl.SealDoc(tok, leadTokenIdentity, newKey...)
		if err != nil {
			return false, err
		}
		set, args = append(set, "token = ?"), append(args, sealedTok)
	}
	if blobs {
		set, args = append(set, "sha256 = ?", "content = ?"), append(args, newAddr, nullable(newContent))
	}
	res, err := t.tx.ExecContext(ctx, tableSQL("UPDATE OR IGNORE %s SET %s WHERE id = ?", tb.name, strings.Join(set, ", ")), append(args, r.id)...)
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return true, err
	}
	// The same record exists in hashed form already (stored while this one was in
	// clear and not found): it is the newer of the two; this one goes.
	if tb.files {
		var st *sql.Stmt
		if st, err = t.prepared(ctx, "DELETE FROM files WHERE id = ?"+returningBlob); err == nil {
			_, _, err = t.deleteFiles(ctx, st, r.id)
		}
	} else {
		_, err = t.tx.ExecContext(ctx, tableSQL("DELETE FROM %s WHERE id = ?", tb.name), r.id)
	}
	if tb.name == "contacts" {
		t.eraseCache = true
		clear(t.pending)
	}
	return true, err
}

// tableSQL fills a statement's table and column names, which come from encTables and
// the code's own WHERE clauses (never from input); values are always bound.
func tableSQL(format string, names ...any) string { return fmt.Sprintf(format, names...) }
