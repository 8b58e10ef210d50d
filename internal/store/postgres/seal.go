package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Encryption at rest (docs/encryption.md, store/seal.go). A store opened with
// Options.Keys seals every doc column and the lead token under the tenant's data key,
// keeps message ids, subject identifiers, lead ids and content addresses as keyed
// hashes, and seals shared files' chunks. Each unit of work (a commit, an erasure, an
// export, one batch of the reseal pass) takes one sealer: one ring for all of it.
//
// A store that held records in clear before it was given Keys is "mixed" until the
// reseal pass has hashed every identifier once (encryption_state.hashed): meanwhile a
// commit first moves the clear identifiers it is about to look up to their hashes
// (unhash: the rows it would dedupe against or upsert), and erasure and export look
// for both forms, so a redelivery of a clear-stored message is still a duplicate and
// an erasure reaches the rows stored in clear. Hashes never change with a rotation
// (the index key does not rotate), so once hashed, a store stays hashed.

// encryptionSchema is the reseal pass's state (one row) and the column that keeps a
// fetched file's true SHA-256 sealed (files.sha256 then holds the content address).
const encryptionSchema = `
ALTER TABLE files ADD COLUMN IF NOT EXISTS content TEXT; -- sealed hex SHA-256 of the stored bytes
CREATE TABLE IF NOT EXISTS encryption_state (
	id             INTEGER PRIMARY KEY CHECK (id = 1),
	hashed         BOOLEAN NOT NULL, -- every identifier is a keyed hash
	keyed          BOOLEAN NOT NULL, -- opened with Keys once: records may be sealed
	sealed_version BIGINT NOT NULL,  -- what the last complete pass brought every record to; 0: none
	pass_version   BIGINT NOT NULL,  -- what the pass under way brings records to; 0: none under way
	stage          INTEGER NOT NULL, -- which stage of the pass (reseal.go) it is at
	pos_id         BIGINT NOT NULL,  -- last id done in that table (tables keyed by id, the blobs' seq)
	pos_a          TEXT NOT NULL,    -- last key done in tombstones (platform) and blobs (address)
	pos_b          TEXT NOT NULL     -- last key done in tombstones (message id)
);
-- How message ids are hashed (store.MessageIDForm), recorded once; 0 in a state row
-- from before the grouped form: undecided.
ALTER TABLE encryption_state ADD COLUMN IF NOT EXISTS message_ids INTEGER NOT NULL DEFAULT 0;
`

// sealer is one unit of work's Sealing, with what the store knows of its identifiers.
type sealer struct {
	store.Sealing
	// mixed: clear identifiers may remain (a store that held records before it was
	// given Keys, before the pass hashed them all).
	mixed bool
}

// sealer returns the Sealing of one unit of work: ErrKeyUnavailable (wrapped) when
// the store has Keys but no ring can be had, or has none but was encrypted before, so
// that nothing is written in clear instead (and nothing sealed is taken for clear).
func (s *Store) sealer() (sealer, error) {
	if !s.opts.Keys.Enabled() && s.keyed.Load() {
		return sealer{}, fmt.Errorf("%w: the store is encrypted and was opened without Keys", store.ErrKeyUnavailable)
	}
	sl, err := s.opts.Keys.Sealing()
	if err != nil {
		return sealer{}, err
	}
	return sealer{Sealing: sl, mixed: sl.Encrypts() && !s.hashed.Load()}, nil
}

// id is the stored form of identifier v for purpose: keyText in clear, the keyed
// hash of keyText(v) when sealing (so that the pass can hash a stored clear value as
// it is). "" stays "".
func (z sealer) id(purpose, v string) string {
	if v == "" {
		return ""
	}
	k := keyText(v)
	if !z.Encrypts() {
		return k
	}
	return z.ID(purpose, k)
}

func (z sealer) msgID(v string) string   { return z.id(store.PurposeMessageID, v) }
func (z sealer) subject(v string) string { return z.id(store.PurposeSubject, v) }
func (z sealer) leadID(v string) string  { return z.id(store.PurposeLeadID, v) }

// nullable is id with "" as NULL (an absent wa_id, user id, alternative subject).
func (z sealer) nullable(purpose, v string) any {
	if v == "" {
		return nil
	}
	return z.id(purpose, v)
}

// hashStored is the hashed form of a stored identifier: itself when already hashed
// (or in clear), the hash of the clear value otherwise.
func (z sealer) hashStored(purpose, stored string) string {
	if !z.Encrypts() || stored == "" || store.IsHashedID(stored) {
		return stored
	}
	return z.ID(purpose, stored)
}

// lookupForms are the stored forms to look a stored identifier set up by: with each
// clear member, in a mixed store, its hash as well (a person's rows may be in both
// forms until the pass is done).
func (z sealer) lookupForms(purpose string, ids []string) []string {
	if !z.mixed {
		return ids
	}
	out := append([]string(nil), ids...)
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	for _, id := range ids {
		if h := z.hashStored(purpose, id); !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// seal is the stored form of a document of table identified by its stored key.
func (z sealer) seal(d []byte, table string, key ...string) (string, error) {
	return z.SealDoc(docText(d), table, key...)
}

// Identities of the sealed columns: the table (or what the column is) and the stored
// values of the row's unique key, in this order.
const (
	tokenIdentity   = "leads-token"
	contentIdentity = "files-content"
)

// unhashColumns are the identifier columns a mixed store converts, by purpose.
var unhashColumns = map[string][]struct{ table, col string }{
	store.PurposeMessageID: {
		{"messages", "message_id"}, {"messages", "reacts_to"}, {"statuses", "message_id"}, {"files", "message_id"},
		{"identity_changes", "message_id"}, {"tombstones", "message_id"},
	},
	store.PurposeSubject: {
		{"contacts", "subject"}, {"contacts", "wa_id"}, {"contacts", "user_id"},
		{"messages", "subject"}, {"messages", "subject_alt"}, {"statuses", "subject"}, {"statuses", "subject_alt"},
		{"receipts", "subject"}, {"files", "subject"}, {"files", "subject_alt"}, {"leads", "subject"}, {"leads", "subject_alt"},
		{"identity_changes", "old_wa_id"}, {"identity_changes", "old_user_id"},
		{"identity_changes", "new_wa_id"}, {"identity_changes", "new_user_id"},
	},
	store.PurposeLeadID: {{"leads", "lead_id"}},
}

// idRef is an identifier as sent and the platform of the record naming it.
type idRef struct {
	platform meta.Platform
	id       string
}

// unhash moves the clear stored forms of refs' identifiers to their hashes in every
// column of purpose, in tx, before the unit of work looks them up or upserts by them:
// what was stored in clear is then found, deduplicated and updated as if it had been
// hashed from the start. Only in a mixed store.
func (z sealer) unhash(ctx context.Context, tx pgx.Tx, purpose string, refs []idRef) error {
	if !z.mixed {
		return nil
	}
	platforms := make([]string, 0, len(refs))
	stored := make([]string, 0, len(refs))
	for _, r := range refs {
		if r.id != "" {
			platforms = append(platforms, keyText(string(r.platform)))
			stored = append(stored, keyText(r.id))
		}
	}
	return z.unhashStored(ctx, tx, purpose, platforms, stored)
}

// unhashStored is unhash of clear stored forms, each with the stored platform of its
// record. Every identifier is converted in all its columns at once, never in one
// table alone, so that a value is either clear everywhere or hashed everywhere:
// retention, erasure and the contact merges compare stored values across tables.
// Message and lead ids are converted on their platform only: their indexes lead with
// it, and they are only ever looked up with it; subject identifiers everywhere, as
// erasure finds them. No sealed identity changes here: a row whose document is sealed
// holds hashed keys already (documents are only sealed under hashed keys).
func (z sealer) unhashStored(ctx context.Context, tx pgx.Tx, purpose string, platforms, stored []string) error {
	var ps, plain, hashed []string
	seen := map[string]bool{}
	for i, c := range stored {
		k := platforms[i] + "\x00" + c
		if c == "" || seen[k] || store.IsHashedID(c) {
			continue
		}
		seen[k] = true
		ps = append(ps, platforms[i])
		plain = append(plain, c)
		hashed = append(hashed, z.ID(purpose, c))
	}
	if len(plain) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, c := range unhashColumns[purpose] {
		b.Queue(unhashSQL(purpose, c.table, c.col), ps, plain, hashed)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("hash identifiers stored in clear: %w", err)
	}
	return nil
}

// unhashSQL moves one column's clear values ($2) to their hashes ($3), on their
// platforms ($1) for message and lead ids. A row whose key the move would give to
// another row already there is left: a clear twin written beside the hashed record
// (by a worker without Keys during a rolling update), which the reseal pass deletes.
func unhashSQL(purpose, table, col string) string {
	q := `UPDATE ` + table + ` SET ` + col + ` = m.h FROM unnest($1::text[], $2::text[], $3::text[]) AS m(p, c, h) WHERE ` + table + `.` + col + ` = m.c`
	if purpose != store.PurposeSubject {
		q += ` AND ` + table + `.platform = m.p`
	}
	if rest, ok := uniqueKeyRest[table+"."+col]; ok {
		// A scalar subquery with a LIMIT, not NOT EXISTS: the planner cannot make it an
		// anti-join that reads the twin's index by platform alone.
		q += ` AND (SELECT true FROM ` + table + ` AS twin WHERE twin.` + col + ` = m.h`
		for _, k := range rest {
			q += ` AND twin.` + k + ` = ` + table + `.` + k
		}
		q += ` LIMIT 1) IS NULL`
	}
	return q
}

// uniqueKeyRest are, for each identifier column in a unique key, the key's other
// columns.
var uniqueKeyRest = map[string][]string{
	"contacts.subject":            {"platform", "channel"},
	"messages.message_id":         {"platform"},
	"statuses.message_id":         {"platform"},
	"receipts.subject":            {"platform", "channel", "state"},
	"files.message_id":            {"platform", "idx"},
	"identity_changes.message_id": {"platform"},
	"tombstones.message_id":       {"platform"},
	"leads.lead_id":               {"platform"},
}

// initEncryption writes the pass's state row once: a database created with Keys is
// hashed and sealed under the active version from the start; one that held records
// before (or was created in clear) has everything ahead of the pass. fresh: the
// schema was just created.
func (s *Store) initEncryption(ctx context.Context, tx pgx.Tx, fresh bool) error {
	hashed, version := false, int64(0)
	if fresh && s.opts.Keys.Enabled() {
		hashed = true
		if sl, err := s.opts.Keys.Sealing(); err == nil {
			version = int64(sl.ActiveVersion())
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO encryption_state(id, hashed, keyed, sealed_version, pass_version, stage, pos_id, pos_a, pos_b)
		VALUES (1, $1, false, $2, 0, 0, 0, '', '') ON CONFLICT (id) DO NOTHING`, hashed, version); err != nil {
		return fmt.Errorf("init encryption state: %w", err)
	}
	var form store.MessageIDForm
	var keyed bool
	if err := tx.QueryRow(ctx, `SELECT message_ids, keyed FROM encryption_state WHERE id = 1`).Scan(&form, &keyed); err != nil {
		return fmt.Errorf("init encryption state: %w", err)
	}
	if form == store.MessageIDsUnknown {
		form = s.decideMessageIDs(keyed)
		if _, err := tx.Exec(ctx, `UPDATE encryption_state SET message_ids = $1 WHERE id = 1`, form); err != nil {
			return fmt.Errorf("record the message id form: %w", err)
		}
	}
	s.opts.Keys = s.opts.Keys.WithMessageIDs(form)
	if s.opts.Keys.Enabled() {
		if _, err := tx.Exec(ctx, `UPDATE encryption_state SET keyed = true WHERE id = 1 AND NOT keyed`); err != nil {
			return fmt.Errorf("init encryption state: %w", err)
		}
	}
	return s.readEncryptionFlags(ctx, tx)
}

// readEncryptionFlags reads whether every identifier is hashed and whether the store
// was ever opened with Keys.
func (s *Store) readEncryptionFlags(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) error {
	var hashed, keyed bool
	var form store.MessageIDForm
	// to_jsonb: a state row from before the message id form has no such column.
	if err := q.QueryRow(ctx, `SELECT hashed, keyed, COALESCE((to_jsonb(e) ->> 'message_ids')::int, 0)
		FROM encryption_state e WHERE id = 1`).Scan(&hashed, &keyed, &form); err != nil {
		return fmt.Errorf("read encryption state: %w", err)
	}
	s.hashed.Store(hashed)
	s.keyed.Store(keyed)
	if form == store.MessageIDsUnknown {
		form = s.decideMessageIDs(keyed)
	}
	s.opts.Keys = s.opts.Keys.WithMessageIDs(form)
	return nil
}

// decideMessageIDs is the message id form of a store that has not recorded one: a
// store opened with Keys before (keyed, before the grouped form existed) may hold
// hashed message ids and keeps the flat form; any other takes the form its Keys ask
// for, grouped unless a test asks otherwise.
func (s *Store) decideMessageIDs(keyed bool) store.MessageIDForm {
	switch {
	case keyed:
		return store.MessageIDsFlat
	case s.opts.Keys.MessageIDs() != store.MessageIDsUnknown:
		return s.opts.Keys.MessageIDs()
	default:
		return store.MessageIDsGrouped
	}
}

// EncryptionState implements store.Resealer.
func (s *Store) EncryptionState(ctx context.Context) (store.EncryptionState, error) {
	if !s.opts.Keys.Enabled() {
		return store.EncryptionState{}, nil
	}
	if err := s.enter(); err != nil {
		return store.EncryptionState{}, err
	}
	defer s.inflight.Done()
	sl, err := s.opts.Keys.Sealing()
	if err != nil {
		return store.EncryptionState{Encrypts: true}, fmt.Errorf("encryption state: %w", err)
	}
	var sealed uint32 // pgx refuses a value out of range
	var hashed bool
	if err := s.pool.QueryRow(ctx, `SELECT sealed_version, hashed FROM encryption_state WHERE id = 1`).Scan(&sealed, &hashed); err != nil {
		return store.EncryptionState{}, fmt.Errorf("encryption state: %w", err)
	}
	if hashed {
		s.hashed.Store(true) // another replica's pass finished
	}
	return store.EncryptionState{Encrypts: true, ActiveVersion: sl.ActiveVersion(), SealedVersion: datakey.Version(sealed)}, nil
}
