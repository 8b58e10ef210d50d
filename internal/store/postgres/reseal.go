package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// The reseal pass (store.Resealer) brings every record to the active key version, a
// few rows per call, each call one short transaction: identifiers stored in clear are
// hashed, documents, lead tokens and content hashes in clear are sealed and those
// sealed under an older version are sealed again, clear file contents are sealed under
// their content address, and chunks sealed under an older version are sealed again.
//
// Its position (which table, the last key done) is the encryption_state row, updated
// in the transaction that does the work: a crash loses at most the batch under way,
// which is done again. Every call first locks that row (FOR UPDATE), so two replicas
// running the pass at once take turns, the second continuing where the first stopped:
// no record is sealed twice, and none is skipped. A rotation (the active version is
// not the one the pass under way works toward) restarts the pass from the first table.
// Once it has gone through every table, the row records the version as sealed and the
// identifiers as hashed; then, until the next rotation, a call does nothing.

// resealCol is a column the pass reads: an identifier to hash (purpose), or a part of
// the row's key that stays clear (purpose "").
type resealCol struct {
	name, purpose string
}

// resealTable is one stage of the pass over a table keyed by id.
type resealTable struct {
	name string
	cols []resealCol // the key columns (sealKeys) among them, by the same names
	// token: leads' token column; content: files' sha256, size and content columns.
	token, content bool
}

var (
	colPlatform = resealCol{"platform", ""}
	colSubject  = resealCol{"subject", store.PurposeSubject}
	colAlt      = resealCol{"subject_alt", store.PurposeSubject}
	colMsgID    = resealCol{"message_id", store.PurposeMessageID}
)

// resealTables are the stages keyed by id, in order; tombstones and the blobs follow.
var resealTables = []resealTable{
	{name: "contacts", cols: []resealCol{colPlatform, {"channel", ""}, colSubject, {"wa_id", store.PurposeSubject}, {"user_id", store.PurposeSubject}}},
	{name: "messages", cols: []resealCol{colPlatform, colMsgID, colSubject, colAlt, {"reacts_to", store.PurposeMessageID}}},
	{name: "statuses", cols: []resealCol{colPlatform, colMsgID, colSubject, colAlt}},
	{name: "receipts", cols: []resealCol{colPlatform, {"channel", ""}, colSubject, {"state", ""}}},
	{name: "files", cols: []resealCol{colPlatform, colMsgID, {"idx::text", ""}, colSubject, colAlt}, content: true},
	{name: "identity_changes", cols: []resealCol{colPlatform, colMsgID,
		{"old_wa_id", store.PurposeSubject}, {"old_user_id", store.PurposeSubject}, {"new_wa_id", store.PurposeSubject}, {"new_user_id", store.PurposeSubject}}},
	{name: "leads", cols: []resealCol{colPlatform, {"lead_id", store.PurposeLeadID}, colSubject, colAlt}, token: true},
}

// Stages after resealTables.
var (
	stageTombstones = len(resealTables)
	stageBlobs      = len(resealTables) + 1
	stageDone       = len(resealTables) + 2
)

// passState is the encryption_state row.
type passState struct {
	hashed         bool
	sealed, target int64
	stage          int
	posID          int64
	posA, posB     string
}

// Reseal implements store.Resealer.
func (s *Store) Reseal(ctx context.Context, limit int) (changed int, done bool, err error) {
	if !s.opts.Keys.Enabled() {
		return 0, true, nil
	}
	if s.opts.ReadOnly {
		return 0, false, store.ErrReadOnly
	}
	if limit <= 0 {
		return 0, false, errors.New("reseal: limit must be positive")
	}
	z, err := s.sealer()
	if err != nil {
		return 0, false, fmt.Errorf("reseal: %w", err)
	}
	if err := s.enter(); err != nil {
		return 0, false, err
	}
	defer s.inflight.Done()
	err = s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		changed, done = 0, false
		var err error
		changed, done, err = reseal(ctx, tx, z, limit)
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("reseal: %w", err)
	}
	if done {
		s.hashed.Store(true)
	}
	return changed, done, nil
}

// reseal is one call of the pass, in tx.
func reseal(ctx context.Context, tx pgx.Tx, z sealer, limit int) (changed int, done bool, err error) {
	var st passState
	if err := tx.QueryRow(ctx, `SELECT hashed, sealed_version, pass_version, stage, pos_id, pos_a, pos_b
		FROM encryption_state WHERE id = 1 FOR UPDATE`).Scan(&st.hashed, &st.sealed, &st.target, &st.stage, &st.posID, &st.posA, &st.posB); err != nil {
		return 0, false, fmt.Errorf("read pass state: %w", err)
	}
	active := int64(z.ActiveVersion())
	if st.hashed && st.sealed == active {
		return 0, true, nil
	}
	if st.target != active { // a new pass, or a rotation in the middle of one
		st = passState{hashed: st.hashed, sealed: st.sealed, target: active}
	}
	// Every table is walked, whatever it holds: rows written since the store got Keys
	// (hashed, under the active version) are read and left as they are.
	z.mixed = !st.hashed
	budget := limit
	for budget > 0 && st.stage < stageDone {
		n, c, err := resealStage(ctx, tx, z, &st, budget)
		if err != nil {
			return changed, false, err
		}
		changed += c
		if n < budget { // the table is done
			st.stage++
			st.posID, st.posA, st.posB = 0, "", ""
		}
		budget -= n
	}
	if st.stage == stageDone {
		st.hashed, st.sealed = true, st.target
	}
	if _, err := tx.Exec(ctx, `UPDATE encryption_state SET hashed = $1, sealed_version = $2, pass_version = $3, stage = $4,
		pos_id = $5, pos_a = $6, pos_b = $7 WHERE id = 1`, st.hashed, st.sealed, st.target, st.stage, st.posID, st.posA, st.posB); err != nil {
		return changed, false, fmt.Errorf("write pass state: %w", err)
	}
	return changed, st.stage == stageDone, nil
}

// resealStage does up to limit rows of the stage st is at, moving its position; it
// returns how many rows it read and how many it changed.
func resealStage(ctx context.Context, tx pgx.Tx, z sealer, st *passState, limit int) (read, changed int, err error) {
	switch st.stage {
	case stageTombstones:
		return resealTombstones(ctx, tx, z, st, limit)
	case stageBlobs:
		return resealBlobs(ctx, tx, z, st, limit)
	default:
		return resealRows(ctx, tx, z, resealTables[st.stage], st, limit)
	}
}

// resealRows does up to limit rows of one table, by id.
func resealRows(ctx context.Context, tx pgx.Tx, z sealer, tb resealTable, st *passState, limit int) (read, changed int, err error) {
	if err := unhashAhead(ctx, tx, z, tb, st.posID, limit); err != nil {
		return 0, 0, err
	}
	sel := []string{"id"}
	for _, c := range tb.cols {
		sel = append(sel, c.name)
	}
	sel = append(sel, "doc")
	if tb.token {
		sel = append(sel, "token")
	}
	if tb.content {
		sel = append(sel, "sha256", "COALESCE(size, 0)", "content")
	}
	rows, err := tx.Query(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM "+tb.name+
		" WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE", st.posID, limit)
	if err != nil {
		return 0, 0, fmt.Errorf("reseal %s: %w", tb.name, err)
	}
	type row struct {
		id             int64
		vals           []*string
		doc            string
		token, sum, ct *string
		size           int64
	}
	var got []row
	for rows.Next() {
		r := row{vals: make([]*string, len(tb.cols))}
		dest := []any{&r.id}
		for i := range r.vals {
			dest = append(dest, &r.vals[i])
		}
		dest = append(dest, &r.doc)
		if tb.token {
			dest = append(dest, &r.token)
		}
		if tb.content {
			dest = append(dest, &r.sum, &r.size, &r.ct)
		}
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("reseal %s: %w", tb.name, err)
		}
		got = append(got, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("reseal %s: %w", tb.name, err)
	}
	for _, r := range got {
		st.posID = r.id
		old, now := rowKey(tb, r.vals, nil), rowKey(tb, r.vals, &z)
		var set []string
		var args []any
		for i, c := range tb.cols {
			if c.purpose == "" || r.vals[i] == nil || store.IsHashedID(*r.vals[i]) {
				continue
			}
			args = append(args, z.ID(c.purpose, *r.vals[i]))
			set = append(set, c.name+" = $"+strconv.Itoa(len(args)))
		}
		moved := len(set) > 0 // the key the documents are sealed with may change
		if moved && !slices.Equal(old, now) {
			dup, err := duplicateOf(ctx, tx, tb, r.id, now)
			if err != nil {
				return read, changed, err
			}
			if dup {
				read++
				changed++
				st.posID = r.id
				continue
			}
		}
		resealed := func(col, stored, identity string) error {
			out, ok, err := resealDoc(z, stored, moved, identity, old, now)
			if err != nil || !ok {
				return err
			}
			args = append(args, out)
			set = append(set, col+" = $"+strconv.Itoa(len(args)))
			return nil
		}
		if err := resealed("doc", r.doc, tb.name); err != nil {
			return read, changed, err
		}
		if r.token != nil {
			if err := resealed("token", *r.token, tokenIdentity); err != nil {
				return read, changed, err
			}
		}
		if tb.content && r.sum != nil {
			if store.IsHashedID(*r.sum) {
				if r.ct != nil {
					if err := resealed("content", *r.ct, contentIdentity); err != nil {
						return read, changed, err
					}
				}
			} else {
				// Bytes stored in clear: sealed under their content address, and the
				// clear copy goes once no record names it.
				addr, ct, err := sealContent(ctx, tx, z, *r.sum, r.size, now)
				if err != nil {
					return read, changed, err
				}
				args = append(args, addr, ct)
				set = append(set, "sha256 = $"+strconv.Itoa(len(args)-1), "content = $"+strconv.Itoa(len(args)))
				if err := updateRow(ctx, tx, tb.name, set, args, r.id); err != nil {
					return read, changed, err
				}
				if err := dropBlobs(ctx, tx, []string{*r.sum}); err != nil {
					return read, changed, err
				}
				read++
				changed++
				continue
			}
		}
		read++
		if len(set) == 0 {
			continue
		}
		if err := updateRow(ctx, tx, tb.name, set, args, r.id); err != nil {
			return read, changed, err
		}
		changed++
	}
	return read, changed, nil
}

// unhashAhead, in a mixed store, hashes the clear identifiers of the rows the batch
// is about to do in every table at once (sealer.unhashStored), before the rows are
// read for update.
func unhashAhead(ctx context.Context, tx pgx.Tx, z sealer, tb resealTable, pos int64, limit int) error {
	if !z.mixed {
		return nil
	}
	// platform first: every table the pass walks by id has one (resealTables).
	cols := []resealCol{colPlatform}
	sel := []string{"platform"}
	for _, c := range tb.cols {
		if c.purpose != "" {
			cols = append(cols, c)
			sel = append(sel, "COALESCE("+c.name+", '')")
		}
	}
	rows, err := tx.Query(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM "+tb.name+" WHERE id > $1 ORDER BY id LIMIT $2", pos, limit)
	if err != nil {
		return fmt.Errorf("reseal %s: %w", tb.name, err)
	}
	vals, err := store.ScanIdentifiers(rows, len(cols))
	rows.Close()
	if err != nil {
		return fmt.Errorf("reseal %s: %w", tb.name, err)
	}
	platforms, byPurpose := map[string][]string{}, map[string][]string{}
	for i, v := range vals {
		c := i % len(cols)
		if c == 0 {
			continue
		}
		p := cols[c].purpose
		platforms[p] = append(platforms[p], vals[i-c])
		byPurpose[p] = append(byPurpose[p], v)
	}
	for _, p := range []string{store.PurposeSubject, store.PurposeMessageID, store.PurposeLeadID} {
		if err := z.unhashStored(ctx, tx, p, platforms[p], byPurpose[p]); err != nil {
			return fmt.Errorf("reseal %s: %w", tb.name, err)
		}
	}
	return nil
}

// duplicateOf deletes row id when another row of the table holds its key once hashed
// (now): a record stored in clear beside its hashed twin, which only a worker without
// Keys writing while one with them runs (a rolling update) leaves, and which the commit
// that made the twin did not move (sealer.unhashStored). The twin is the record's
// latest form; bytes only the deleted row named go with it.
func duplicateOf(ctx context.Context, tx pgx.Tx, tb resealTable, id int64, now []string) (bool, error) {
	var where []string
	args := []any{id}
	for i, k := range sealKeys[tb.name] {
		args = append(args, now[i])
		where = append(where, k+" = $"+strconv.Itoa(len(args)))
	}
	var dup bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+tb.name+" WHERE "+strings.Join(where, " AND ")+" AND id <> $1)", args...).Scan(&dup); err != nil || !dup {
		return false, err
	}
	if tb.content {
		_, _, err := deleteFiles(ctx, tx, `DELETE FROM files WHERE id = $1`+returningBlob, id)
		return true, err
	}
	if _, err := tx.Exec(ctx, "DELETE FROM "+tb.name+" WHERE id = $1", id); err != nil {
		return false, fmt.Errorf("reseal %s: %w", tb.name, err)
	}
	return true, nil
}

func updateRow(ctx context.Context, tx pgx.Tx, table string, set []string, args []any, id int64) error {
	args = append(args, id)
	if _, err := tx.Exec(ctx, "UPDATE "+table+" SET "+strings.Join(set, ", ")+" WHERE id = $"+strconv.Itoa(len(args)), args...); err != nil {
		return fmt.Errorf("reseal %s: %w", table, err)
	}
	return nil
}

// rowKey is the key a row's documents are sealed with (sealKeys' columns, in order):
// as stored (z nil), or with its identifiers hashed.
func rowKey(tb resealTable, vals []*string, z *sealer) []string {
	var key []string
	for _, k := range sealKeys[tb.name] {
		for i, c := range tb.cols {
			if c.name != k {
				continue
			}
			v := ""
			if vals[i] != nil {
				v = *vals[i]
			}
			if z != nil && c.purpose != "" {
				v = z.hashStored(c.purpose, v)
			}
			key = append(key, v)
		}
	}
	return key
}

// resealDoc is a stored document brought to the active version under the row's key
// now (ok false: it is there already). A sealed document is opened under the key it
// was sealed with (old) and sealed anew; one in clear is sealed.
func resealDoc(z sealer, stored string, moved bool, identity string, old, now []string) (string, bool, error) {
	if store.IsSealedDoc(stored) {
		v, err := store.DocVersion(stored)
		if err != nil {
			return "", false, err
		}
		if v == z.ActiveVersion() && !moved {
			return "", false, nil
		}
	}
	plain, err := z.OpenDoc(stored, identity, old...)
	if err != nil {
		return "", false, err
	}
	out, err := z.SealDoc(plain, identity, now...)
	return out, err == nil, err
}

// sealContent seals a content stored in clear (chunks under its hex SHA-256) under its
// content address, unless that is stored already, and returns the address and the
// record's sealed content hash (under the record's key).
func sealContent(ctx context.Context, tx pgx.Tx, z sealer, sum string, size int64, key []string) (addr, content string, err error) {
	addr = z.ID(store.PurposeContent, sum)
	if err := lockBlobs(ctx, tx, []string{addr, sum}); err != nil {
		return "", "", err
	}
	var exists bool
	if err := tx.QueryRow(ctx, sqlBlobExists, addr).Scan(&exists); err != nil {
		return "", "", fmt.Errorf("reseal file bytes: %w", err)
	}
	if !exists {
		for seq, n := 0, chunkCount(size); seq < n; seq++ {
			var data []byte
			if err := tx.QueryRow(ctx, sqlReadChunk, sum, seq).Scan(&data); err != nil {
				return "", "", fmt.Errorf("reseal file bytes: chunk %d: %w", seq, err)
			}
			sealed, err := z.SealBytes(data, addr, seq, seq == n-1)
			if err != nil {
				return "", "", err
			}
			if _, err := tx.Exec(ctx, sqlInsertChunk, addr, seq, sealed); err != nil {
				return "", "", fmt.Errorf("reseal file bytes: chunk %d: %w", seq, err)
			}
		}
	}
	content, err = z.SealDoc([]byte(sum), contentIdentity, key...)
	return addr, content, err
}

// resealTombstones hashes up to limit tombstones' message ids, in key order.
func resealTombstones(ctx context.Context, tx pgx.Tx, z sealer, st *passState, limit int) (read, changed int, err error) {
	rows, err := tx.Query(ctx, `SELECT platform, message_id FROM tombstones WHERE (platform, message_id) > ($1, $2)
		ORDER BY platform, message_id LIMIT $3 FOR UPDATE`, st.posA, st.posB, limit)
	if err != nil {
		return 0, 0, fmt.Errorf("reseal tombstones: %w", err)
	}
	var got [][2]string
	for rows.Next() {
		var k [2]string
		if err := rows.Scan(&k[0], &k[1]); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("reseal tombstones: %w", err)
		}
		got = append(got, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("reseal tombstones: %w", err)
	}
	for _, k := range got {
		read++
		st.posA, st.posB = k[0], k[1]
		if store.IsHashedID(k[1]) {
			continue
		}
		// A hashed tombstone of the same message may exist already: one is kept.
		if _, err := tx.Exec(ctx, `INSERT INTO tombstones(platform, message_id, deleted_at)
			SELECT platform, $3, deleted_at FROM tombstones WHERE platform = $1 AND message_id = $2 ON CONFLICT DO NOTHING`,
			k[0], k[1], z.ID(store.PurposeMessageID, k[1])); err != nil {
			return read, changed, fmt.Errorf("reseal tombstones: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tombstones WHERE platform = $1 AND message_id = $2`, k[0], k[1]); err != nil {
			return read, changed, fmt.Errorf("reseal tombstones: %w", err)
		}
		changed++
	}
	return read, changed, nil
}

// resealBlobs seals again up to limit chunks sealed under another version than the
// active one, in key order. Contents in clear were sealed with their records (files).
func resealBlobs(ctx context.Context, tx pgx.Tx, z sealer, st *passState, limit int) (read, changed int, err error) {
	// The header (datakey.Overhead bytes: format, version, nonce, the smallest tag)
	// says the version without reading the chunk.
	rows, err := tx.Query(ctx, `SELECT sha256, seq, substring(data FROM 1 FOR $4),
			seq = (SELECT max(seq) FROM blobs b WHERE b.sha256 = blobs.sha256)
		FROM blobs WHERE sha256 LIKE 'h:%' AND (sha256, seq) > ($1, $2) ORDER BY sha256, seq LIMIT $3`, st.posA, st.posID, limit, datakey.Overhead)
	if err != nil {
		return 0, 0, fmt.Errorf("reseal file bytes: %w", err)
	}
	type chunk struct {
		addr   string
		seq    int64
		header []byte
		last   bool
	}
	var got []chunk
	for rows.Next() {
		var c chunk
		if err := rows.Scan(&c.addr, &c.seq, &c.header, &c.last); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("reseal file bytes: %w", err)
		}
		got = append(got, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("reseal file bytes: %w", err)
	}
	for _, c := range got {
		read++
		st.posA, st.posID = c.addr, c.seq
		if v, err := datakey.VersionOf(c.header); err == nil && v == z.ActiveVersion() {
			continue
		}
		if err := lockBlobs(ctx, tx, []string{c.addr}); err != nil {
			return read, changed, err
		}
		var data []byte
		err := tx.QueryRow(ctx, `SELECT data FROM blobs WHERE sha256 = $1 AND seq = $2 FOR UPDATE`, c.addr, c.seq).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // the content went meanwhile
		}
		if err != nil {
			return read, changed, fmt.Errorf("reseal file bytes: %w", err)
		}
		plain, err := z.OpenBytes(data, c.addr, int(c.seq), c.last)
		if err != nil {
			return read, changed, err
		}
		sealed, err := z.SealBytes(plain, c.addr, int(c.seq), c.last)
		if err != nil {
			return read, changed, err
		}
		if _, err := tx.Exec(ctx, `UPDATE blobs SET data = $3 WHERE sha256 = $1 AND seq = $2`, c.addr, c.seq, sealed); err != nil {
			return read, changed, fmt.Errorf("reseal file bytes: %w", err)
		}
		changed++
	}
	return read, changed, nil
}
