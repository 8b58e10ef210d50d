package postgres

// The schema is the SQLite backend's, table for table and column for column, so that
// both backends answer the conformance suite from the same model. The differences:
//
//   - ids are identity columns (BIGINT GENERATED ALWAYS AS IDENTITY) where SQLite has
//     its rowid; export orders by them, as SQLite does;
//   - times stay integers (BIGINT milliseconds since the epoch, like the SQLite
//     columns), not timestamptz: they are compared and converted back exactly as there,
//     and the JSON documents carry the times that are exported anyway;
//   - documents are TEXT, never JSONB: JSONB reorders keys and rewrites numbers and
//     escapes, and an export must print the bytes SQLite prints (see text.go for the
//     only bytes PostgreSQL cannot store as they are);
//   - later columns go in below the CREATE TABLE statements (retentionSchema,
//     filesSchema), filled from the stored documents for the rows already there;
//   - stored file bytes are rows of their own table (blobs, files.go), not files on a
//     volume: every replica sees them, and DROP DATABASE erases them with the rest.
//
// Every statement is idempotent, and Open runs them in one transaction holding an
// advisory lock (lockSchema): two worker replicas starting at once would otherwise race
// in CREATE TABLE IF NOT EXISTS, which is not safe against concurrent creators.
const schema = `
CREATE TABLE IF NOT EXISTS contacts (
	id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	platform TEXT NOT NULL,
	channel  TEXT NOT NULL,
	subject  TEXT NOT NULL,
	wa_id    TEXT,
	user_id  TEXT,
	doc      TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS contacts_subject ON contacts(platform, channel, subject);
CREATE INDEX IF NOT EXISTS contacts_wa_id ON contacts(wa_id) WHERE wa_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS contacts_user_id ON contacts(user_id) WHERE user_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS messages (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	platform    TEXT NOT NULL,
	message_id  TEXT NOT NULL,
	channel     TEXT NOT NULL,
	subject     TEXT NOT NULL,
	subject_alt TEXT,
	ts          BIGINT,
	doc         TEXT NOT NULL,
	reacts_to   TEXT -- a reaction's target message id, so that retention takes it along
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_message_id ON messages(platform, message_id);
CREATE INDEX IF NOT EXISTS messages_subject ON messages(subject);
CREATE INDEX IF NOT EXISTS messages_subject_alt ON messages(subject_alt) WHERE subject_alt IS NOT NULL;

CREATE TABLE IF NOT EXISTS statuses (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	platform    TEXT NOT NULL,
	message_id  TEXT NOT NULL,
	channel     TEXT NOT NULL,
	subject     TEXT NOT NULL,
	subject_alt TEXT,
	rank        INTEGER NOT NULL,
	doc         TEXT NOT NULL,
	ts          BIGINT -- the stored status's own timestamp, for retention
);
CREATE UNIQUE INDEX IF NOT EXISTS statuses_message_id ON statuses(platform, message_id);
CREATE INDEX IF NOT EXISTS statuses_subject ON statuses(subject);
CREATE INDEX IF NOT EXISTS statuses_subject_alt ON statuses(subject_alt) WHERE subject_alt IS NOT NULL;

CREATE TABLE IF NOT EXISTS receipts (
	id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	platform  TEXT NOT NULL,
	channel   TEXT NOT NULL,
	subject   TEXT NOT NULL,
	state     TEXT NOT NULL,
	watermark BIGINT NOT NULL,
	doc       TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS receipts_key ON receipts(platform, channel, subject, state);
CREATE INDEX IF NOT EXISTS receipts_subject ON receipts(subject);

CREATE TABLE IF NOT EXISTS files (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	platform    TEXT NOT NULL,
	message_id  TEXT NOT NULL,
	idx         INTEGER NOT NULL,
	channel     TEXT NOT NULL,
	subject     TEXT NOT NULL,
	subject_alt TEXT,
	media_id    TEXT,
	doc         TEXT NOT NULL,
	-- The fetch queue and the stored bytes (store/files.go, docs/shared-files.md).
	state       TEXT NOT NULL DEFAULT 'metadataOnly',
	attempts    INTEGER NOT NULL DEFAULT 0,
	next_at     BIGINT, -- pending: due at (ms); a claim's lease moves it forward
	received_at BIGINT, -- when the record was stored (ms)
	fail_reason TEXT,
	sha256      TEXT,   -- hex, of the stored bytes (in blobs): set once fetched
	size        BIGINT,
	mime_type   TEXT    -- as recorded when the bytes were stored
);
CREATE UNIQUE INDEX IF NOT EXISTS files_key ON files(platform, message_id, idx);
CREATE INDEX IF NOT EXISTS files_subject ON files(subject);
CREATE INDEX IF NOT EXISTS files_subject_alt ON files(subject_alt) WHERE subject_alt IS NOT NULL;

-- Identity changes (WhatsApp system messages): one person's old and new identifiers.
-- Erasure and export resolve a subject through them (store.ResolveIdentifiers).
CREATE TABLE IF NOT EXISTS identity_changes (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	platform    TEXT NOT NULL,
	channel     TEXT NOT NULL,
	message_id  TEXT NOT NULL,
	old_wa_id   TEXT,
	old_user_id TEXT,
	new_wa_id   TEXT,
	new_user_id TEXT,
	doc         TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS identity_changes_message ON identity_changes(platform, message_id);
CREATE INDEX IF NOT EXISTS identity_changes_old_wa_id ON identity_changes(old_wa_id) WHERE old_wa_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS identity_changes_old_user_id ON identity_changes(old_user_id) WHERE old_user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS identity_changes_new_wa_id ON identity_changes(new_wa_id) WHERE new_wa_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS identity_changes_new_user_id ON identity_changes(new_user_id) WHERE new_user_id IS NOT NULL;

-- Deleted message ids, so that a redelivery of an unsent message is not stored again.
-- Holds no subject: only the platform's opaque message id.
CREATE TABLE IF NOT EXISTS tombstones (
	platform   TEXT NOT NULL,
	message_id TEXT NOT NULL,
	deleted_at BIGINT NOT NULL,
	PRIMARY KEY (platform, message_id)
);

-- Erasure ledger: proof of what was erased and when, never the identifier.
CREATE TABLE IF NOT EXISTS erasures (
	id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	subject_ref  TEXT NOT NULL,
	platform     TEXT NOT NULL,
	requested_at BIGINT,
	completed_at BIGINT NOT NULL,
	contacts     INTEGER NOT NULL,
	messages     INTEGER NOT NULL,
	statuses     INTEGER NOT NULL,
	files        INTEGER NOT NULL,
	channel      TEXT, -- NULL: every channel
	scope        TEXT  -- comma-separated kinds
);
` + retentionSchema + leadsSchema + filesSchema + encryptionSchema

const (
	// A message is inserted only if it was never deleted. The tombstone check and the
	// insert race with a concurrent deletion unless both hold the message's lock (see
	// lockMessages).
	//
	// Messages, statuses and receipts are inserted in key order (see apply) with ids
	// allocated beforehand in delivery order: OVERRIDING SYSTEM VALUE takes those ids.
	sqlInsertMessage = `INSERT INTO messages(id, platform, message_id, channel, subject, subject_alt, ts, doc, reacts_to) OVERRIDING SYSTEM VALUE
		SELECT $8::bigint, $1::text, $2::text, $3::text, $4::text, $5::text, $6::bigint, $7::text, $9::text
		WHERE NOT EXISTS (SELECT 1 FROM tombstones WHERE platform = $1 AND message_id = $2)
		ON CONFLICT (platform, message_id) DO NOTHING`
	sqlInsertFile = `INSERT INTO files(platform, message_id, idx, channel, subject, subject_alt, media_id, doc, state, next_at, received_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (platform, message_id, idx) DO NOTHING`
	// ON CONFLICT ... DO UPDATE ... WHERE is atomic in PostgreSQL: two replicas applying
	// statuses of one message concurrently end with the furthest one, and a stale one
	// affects no row.
	sqlUpsertStatus = `INSERT INTO statuses(id, platform, message_id, channel, subject, subject_alt, rank, doc, ts) OVERRIDING SYSTEM VALUE
		VALUES ($8, $1, $2, $3, $4, $5, $6, $7, $9)
		ON CONFLICT (platform, message_id) DO UPDATE SET
			channel = excluded.channel, subject = excluded.subject, subject_alt = excluded.subject_alt,
			rank = excluded.rank, doc = excluded.doc, ts = excluded.ts
		WHERE excluded.rank > statuses.rank`
	sqlUpsertReceipt = `INSERT INTO receipts(id, platform, channel, subject, state, watermark, doc) OVERRIDING SYSTEM VALUE
		VALUES ($7, $1, $2, $3, $4, $5, $6)
		ON CONFLICT (platform, channel, subject, state) DO UPDATE SET watermark = excluded.watermark, doc = excluded.doc
		WHERE excluded.watermark > receipts.watermark`
	// Not FOR UPDATE: the rows found may carry identifiers whose locks this transaction
	// does not hold yet, and waiting for a row lock while holding advisory locks could
	// close a cycle. Rows are written only once all their identifiers are locked, which
	// excludes every other writer of them (upsertContact).
	sqlFindContacts = `SELECT id, subject, COALESCE(wa_id, ''), COALESCE(user_id, ''), doc FROM contacts
		WHERE platform = $1 AND channel = $2 AND (subject = $3 OR wa_id = $4 OR user_id = $5)
		ORDER BY id`
	// Ids for the rows about to be inserted, one per row, in allocation order.
	sqlAllocateIDs = `SELECT ARRAY(SELECT nextval(pg_get_serial_sequence('messages', 'id')) FROM generate_series(1, $1)),
		ARRAY(SELECT nextval(pg_get_serial_sequence('statuses', 'id')) FROM generate_series(1, $2)),
		ARRAY(SELECT nextval(pg_get_serial_sequence('receipts', 'id')) FROM generate_series(1, $3))`
	sqlInsertContact        = `INSERT INTO contacts(platform, channel, subject, wa_id, user_id, doc) VALUES ($1, $2, $3, $4, $5, $6)`
	sqlUpdateContact        = `UPDATE contacts SET subject = $1, wa_id = $2, user_id = $3, doc = $4 WHERE id = $5`
	sqlDeleteContact        = `DELETE FROM contacts WHERE id = $1`
	sqlTombstone            = `INSERT INTO tombstones(platform, message_id, deleted_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
	sqlDeleteMessage        = `DELETE FROM messages WHERE platform = $1 AND message_id = $2`
	sqlDeleteFiles          = `DELETE FROM files WHERE platform = $1 AND message_id = $2` + returningBlob
	sqlInsertIdentityChange = `INSERT INTO identity_changes(platform, message_id, channel, old_wa_id, old_user_id, new_wa_id, new_user_id, doc)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (platform, message_id) DO NOTHING`
	sqlInsertErasure = `INSERT INTO erasures(subject_ref, platform, channel, scope, requested_at, completed_at, contacts, messages, statuses, files, file_bytes)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`
)
