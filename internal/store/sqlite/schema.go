package sqlite

// Every record table keeps the columns it is keyed, deduplicated or erased by, plus the
// record's JSON document (what export prints). Subject columns index erasure and
// per-subject export; subject_alt is NULL unless the subject also has a wa_id.
const schema = `
CREATE TABLE IF NOT EXISTS contacts (
	id       INTEGER PRIMARY KEY,
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
	id          INTEGER PRIMARY KEY,
	platform    TEXT NOT NULL,
	message_id  TEXT NOT NULL,
	channel     TEXT NOT NULL,
	subject     TEXT NOT NULL,
	subject_alt TEXT,
	ts          INTEGER,
	doc         TEXT NOT NULL,
	reacts_to   TEXT -- a reaction's target message id, so that retention takes it along
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_message_id ON messages(platform, message_id);
CREATE INDEX IF NOT EXISTS messages_subject ON messages(subject);
CREATE INDEX IF NOT EXISTS messages_subject_alt ON messages(subject_alt) WHERE subject_alt IS NOT NULL;

CREATE TABLE IF NOT EXISTS statuses (
	id          INTEGER PRIMARY KEY,
	platform    TEXT NOT NULL,
	message_id  TEXT NOT NULL,
	channel     TEXT NOT NULL,
	subject     TEXT NOT NULL,
	subject_alt TEXT,
	rank        INTEGER NOT NULL,
	doc         TEXT NOT NULL,
	ts          INTEGER -- the stored status's own timestamp, for retention
);
CREATE UNIQUE INDEX IF NOT EXISTS statuses_message_id ON statuses(platform, message_id);
CREATE INDEX IF NOT EXISTS statuses_subject ON statuses(subject);
CREATE INDEX IF NOT EXISTS statuses_subject_alt ON statuses(subject_alt) WHERE subject_alt IS NOT NULL;

CREATE TABLE IF NOT EXISTS receipts (
	id        INTEGER PRIMARY KEY,
	platform  TEXT NOT NULL,
	channel   TEXT NOT NULL,
	subject   TEXT NOT NULL,
	state     TEXT NOT NULL,
	watermark INTEGER NOT NULL,
	doc       TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS receipts_key ON receipts(platform, channel, subject, state);
CREATE INDEX IF NOT EXISTS receipts_subject ON receipts(subject);

CREATE TABLE IF NOT EXISTS files (
	id          INTEGER PRIMARY KEY,
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
	next_at     INTEGER, -- pending: due at (ms); a claim's lease moves it forward
	received_at INTEGER, -- when the record was stored (ms)
	fail_reason TEXT,
	sha256      TEXT,    -- hex, of the stored bytes: set once fetched
	size        INTEGER,
	mime_type   TEXT,    -- as recorded when the bytes were stored
	-- With Keys: sha256 is the keyed content address, and content the sealed hex
	-- SHA-256 of the bytes (what export shows); NULL in clear.
	content     TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS files_key ON files(platform, message_id, idx);
CREATE INDEX IF NOT EXISTS files_subject ON files(subject);
CREATE INDEX IF NOT EXISTS files_subject_alt ON files(subject_alt) WHERE subject_alt IS NOT NULL;

-- Identity changes (WhatsApp system messages): one person's old and new identifiers.
-- Erasure and export resolve a subject through them (store.ResolveIdentifiers).
CREATE TABLE IF NOT EXISTS identity_changes (
	id          INTEGER PRIMARY KEY,
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
	deleted_at INTEGER NOT NULL,
	PRIMARY KEY (platform, message_id)
) WITHOUT ROWID;

-- Erasure ledger: proof of what was erased and when, never the identifier.
CREATE TABLE IF NOT EXISTS erasures (
	id           INTEGER PRIMARY KEY,
	subject_ref  TEXT NOT NULL,
	platform     TEXT NOT NULL,
	requested_at INTEGER,
	completed_at INTEGER NOT NULL,
	contacts     INTEGER NOT NULL,
	messages     INTEGER NOT NULL,
	statuses     INTEGER NOT NULL,
	files        INTEGER NOT NULL,
	channel      TEXT, -- NULL: every channel
	scope        TEXT, -- comma-separated kinds; NULL in entries from before scopes (every kind)
	file_bytes   INTEGER NOT NULL DEFAULT 0
);

-- What the committed batches of an unfinished subject erasure deleted (see Erase): the
-- ledger entry, written by the last batch, counts the request's whole. Keyed like the
-- ledger, by the keyed hash of the identifier, never the identifier.
CREATE TABLE IF NOT EXISTS erasure_progress (
	subject_ref TEXT NOT NULL,
	channel     TEXT NOT NULL, -- '': every channel
	scope       TEXT NOT NULL,
	contacts    INTEGER NOT NULL,
	messages    INTEGER NOT NULL,
	statuses    INTEGER NOT NULL,
	files       INTEGER NOT NULL,
	file_bytes  INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (subject_ref, channel, scope)
) WITHOUT ROWID;
`

// migrations bring a store created by an earlier version up to the schema above (CREATE
// TABLE IF NOT EXISTS does not add columns): for each table, the columns it must have
// and how to add them.
var migrations = []struct{ table, column, add string }{
	{"erasures", "channel", "ALTER TABLE erasures ADD COLUMN channel TEXT"},
	{"erasures", "scope", "ALTER TABLE erasures ADD COLUMN scope TEXT"},
	// Retention's columns, filled from the stored documents for the rows already there.
	{"messages", "reacts_to", `ALTER TABLE messages ADD COLUMN reacts_to TEXT;
		UPDATE messages SET reacts_to = json_extract(doc, '$.reaction.messageID')
		WHERE json_extract(doc, '$.reaction.messageID') IS NOT NULL`},
	{"statuses", "ts", `ALTER TABLE statuses ADD COLUMN ts INTEGER;
		UPDATE statuses SET ts = CAST(round((julianday(json_extract(doc, '$.timestamp')) - 2440587.5) * 86400000) AS INTEGER)
		WHERE json_extract(doc, '$.timestamp') IS NOT NULL`},
	{"erasures", "file_bytes", "ALTER TABLE erasures ADD COLUMN file_bytes INTEGER NOT NULL DEFAULT 0"},
	{"erasure_progress", "file_bytes", "ALTER TABLE erasure_progress ADD COLUMN file_bytes INTEGER NOT NULL DEFAULT 0"},
	// Shared files: records stored before bytes were fetched join the queue when there is
	// something to fetch and Meta allows storing it (store.InitialFileState).
	{"files", "attempts", "ALTER TABLE files ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0"},
	{"files", "next_at", "ALTER TABLE files ADD COLUMN next_at INTEGER"},
	{"files", "received_at", "ALTER TABLE files ADD COLUMN received_at INTEGER"},
	{"files", "fail_reason", "ALTER TABLE files ADD COLUMN fail_reason TEXT"},
	{"files", "sha256", "ALTER TABLE files ADD COLUMN sha256 TEXT"},
	{"files", "size", "ALTER TABLE files ADD COLUMN size INTEGER"},
	{"files", "mime_type", "ALTER TABLE files ADD COLUMN mime_type TEXT"},
	{"files", "content", "ALTER TABLE files ADD COLUMN content TEXT"},
	{"files", "state", `ALTER TABLE files ADD COLUMN state TEXT NOT NULL DEFAULT 'metadataOnly';
		UPDATE files SET state = 'pending', next_at = 0,
			received_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
		WHERE NOT COALESCE(json_extract(doc, '$.noFetch'), 0)
			AND (media_id IS NOT NULL OR json_extract(doc, '$.url') IS NOT NULL)`},
}

// fileIndexes make the fetch queue an index scan (due pending files, in due order; a
// partial index, so that fetched and failed files cost it nothing) and find the records
// sharing stored bytes (deduplication and the reference check before bytes are removed).
// Created after the migrations, which add their columns to earlier stores.
const fileIndexes = `
CREATE INDEX IF NOT EXISTS files_due ON files(next_at, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS files_sha256 ON files(sha256) WHERE sha256 IS NOT NULL;
`

var statements = map[string]string{
	"insertMessage": `INSERT INTO messages(platform, message_id, channel, subject, subject_alt, ts, doc, reacts_to)
		SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
		WHERE NOT EXISTS (SELECT 1 FROM tombstones WHERE platform = ?1 AND message_id = ?2)
		ON CONFLICT(platform, message_id) DO NOTHING`,
	// Without tombstones there is nothing to check against: a quarter less work per message.
	"insertMessageNoTombstones": `INSERT INTO messages(platform, message_id, channel, subject, subject_alt, ts, doc, reacts_to)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(platform, message_id) DO NOTHING`,
	"insertFile": `INSERT INTO files(platform, message_id, idx, channel, subject, subject_alt, media_id, doc, state, next_at, received_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(platform, message_id, idx) DO NOTHING`,
	"upsertStatus": `INSERT INTO statuses(platform, message_id, channel, subject, subject_alt, rank, doc, ts)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(platform, message_id) DO UPDATE SET
			channel = excluded.channel, subject = excluded.subject, subject_alt = excluded.subject_alt,
			rank = excluded.rank, doc = excluded.doc, ts = excluded.ts
		WHERE excluded.rank > statuses.rank`,
	"upsertReceipt": `INSERT INTO receipts(platform, channel, subject, state, watermark, doc)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(platform, channel, subject, state) DO UPDATE SET watermark = excluded.watermark, doc = excluded.doc
		WHERE excluded.watermark > receipts.watermark`,
	// A UNION of three indexed lookups rather than one OR: SQLite cannot use the indexes
	// for an OR whose arms carry "?<>''" guards, and a scan per contact grows with the
	// tenant. One statement rather than three keeps the writer's per-call overhead down.
	"findContacts": `SELECT id, subject, COALESCE(wa_id, ''), COALESCE(user_id, ''), doc FROM contacts WHERE platform = ?1 AND channel = ?2 AND subject = ?3
		UNION SELECT id, subject, COALESCE(wa_id, ''), COALESCE(user_id, ''), doc FROM contacts WHERE wa_id = ?4 AND platform = ?1 AND channel = ?2
		UNION SELECT id, subject, COALESCE(wa_id, ''), COALESCE(user_id, ''), doc FROM contacts WHERE user_id = ?5 AND platform = ?1 AND channel = ?2
		ORDER BY id`,
	"insertContact": `INSERT INTO contacts(platform, channel, subject, wa_id, user_id, doc) VALUES (?, ?, ?, ?, ?, ?)`,
	"updateContact": `UPDATE contacts SET subject = ?, wa_id = ?, user_id = ?, doc = ? WHERE id = ?`,
	"deleteContact": `DELETE FROM contacts WHERE id = ?`,
	"insertIdentityChange": `INSERT INTO identity_changes(platform, message_id, channel, old_wa_id, old_user_id, new_wa_id, new_user_id, doc)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(platform, message_id) DO NOTHING`,
	"tombstone":     `INSERT INTO tombstones(platform, message_id, deleted_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
	"deleteMessage": `DELETE FROM messages WHERE platform = ? AND message_id = ?`,
	"deleteFiles":   `DELETE FROM files WHERE platform = ? AND message_id = ?` + returningBlob,
	// Retention's (retention.go), prepared once here rather than in every batch.
	"pruneAgedMessages":      sqlPruneAgedMessages,
	"pruneReactions":         sqlPruneReactions,
	"pruneStatusesOf":        sqlPruneStatusesOf,
	"pruneFilesOf":           sqlPruneFilesOf,
	"pruneIdentityChangesOf": sqlPruneIdentityChangesOf,
	"pruneAgedStatuses":      sqlPruneAgedStatuses,
	"pruneAgedReceipts":      sqlPruneAgedReceipts,
	// The fetch queue's (files.go).
	"claimFetches": sqlClaimFetches,
	"retryFile":    sqlRetryFile,
	"failFile":     sqlFailFile,
	"releaseFile":  sqlReleaseFile,
	"fetchedFile":  sqlFetchedFile,
	"blobUsed":     sqlBlobUsed,
}
