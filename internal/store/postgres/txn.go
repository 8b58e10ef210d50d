package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/docenc"
)

// doc is a record with its document in stored form (sealed, or JSON in clear) and its
// message id as stored (hashed, or keyText in clear).
type doc[T any] struct {
	rec  *T
	json string
	id   string
}

// prepared is a batch with its documents already encoded, with the encoders the SQLite
// backend uses: both store (and export) the same bytes; and sealed when the store
// encrypts.
type prepared struct {
	b        *meta.Batch
	z        sealer
	messages []doc[meta.Message]
	files    map[string][]doc[meta.File] // by platform and message id: stored only with a new message
	statuses []doc[meta.Status]
	receipts []doc[meta.Receipt]
}

// encode is rec's stored document, sealed as the row of table whose unique key is key
// (stored forms).
func encode[T any](z sealer, rec *T, id, table string, key ...string) (doc[T], error) {
	b, err := docenc.Encode(rec)
	if err != nil {
		return doc[T]{}, err
	}
	sealed, err := z.seal(b, table, key...)
	if err != nil {
		return doc[T]{}, err
	}
	return doc[T]{rec, sealed, id}, nil
}

func fileKey(platform meta.Platform, messageID string) string {
	return string(platform) + "\x00" + messageID
}

func prepare(b *meta.Batch, z sealer) (*prepared, error) {
	p := &prepared{b: b, z: z, files: map[string][]doc[meta.File]{}}
	for i := range b.Messages {
		m := &b.Messages[i]
		id := z.msgID(m.ID)
		d, err := encode(z, m, id, "messages", keyText(string(m.Platform)), id)
		if err != nil {
			return nil, err
		}
		p.messages = append(p.messages, d)
	}
	for i := range b.Files {
		f := &b.Files[i]
		id := z.msgID(f.MessageID)
		d, err := encode(z, f, id, "files", keyText(string(f.Platform)), id, strconv.Itoa(f.Index))
		if err != nil {
			return nil, err
		}
		k := fileKey(f.Platform, f.MessageID)
		p.files[k] = append(p.files[k], d)
	}
	for i := range b.Statuses {
		st := &b.Statuses[i]
		id := z.msgID(st.MessageID)
		d, err := encode(z, st, id, "statuses", keyText(string(st.Platform)), id)
		if err != nil {
			return nil, err
		}
		p.statuses = append(p.statuses, d)
	}
	for i := range b.Receipts {
		r := &b.Receipts[i]
		d, err := encode(z, r, "", "receipts", keyText(string(r.Platform)), keyText(r.Channel), z.subject(r.Subject), keyText(r.State))
		if err != nil {
			return nil, err
		}
		p.receipts = append(p.receipts, d)
	}
	return p, nil
}

// unhashBatch, in a mixed store, moves to their hashes the clear stored forms of every
// identifier the batch looks up or upserts by (seal.go), before any of it is read.
func unhashBatch(ctx context.Context, tx pgx.Tx, z sealer, b *meta.Batch) error {
	if !z.mixed {
		return nil
	}
	var subjects, msgIDs, leadIDs []idRef
	sub := func(p meta.Platform, ids ...string) {
		for _, id := range ids {
			subjects = append(subjects, idRef{p, id})
		}
	}
	for i := range b.Contacts {
		c := &b.Contacts[i]
		sub(c.Platform, c.Subject, c.WaID, c.UserID)
	}
	for i := range b.Identities {
		c := &b.Identities[i]
		sub(c.Platform, c.Identifiers()...)
		msgIDs = append(msgIDs, idRef{c.Platform, c.MessageID})
	}
	for i := range b.Messages {
		m := &b.Messages[i]
		sub(m.Platform, m.Subject, m.SubjectAlt)
		msgIDs = append(msgIDs, idRef{m.Platform, m.ID}, idRef{m.Platform, store.ReactsTo(m)})
	}
	for i := range b.Statuses {
		st := &b.Statuses[i]
		sub(st.Platform, st.Subject, st.SubjectAlt)
		msgIDs = append(msgIDs, idRef{st.Platform, st.MessageID})
	}
	for i := range b.Receipts {
		sub(b.Receipts[i].Platform, b.Receipts[i].Subject)
	}
	for i := range b.Files {
		f := &b.Files[i]
		sub(f.Platform, f.Subject, f.SubjectAlt)
		msgIDs = append(msgIDs, idRef{f.Platform, f.MessageID})
	}
	for i := range b.Deletions {
		msgIDs = append(msgIDs, idRef{b.Deletions[i].Platform, b.Deletions[i].MessageID})
	}
	for i := range b.Leads {
		l := &b.Leads[i]
		sub(l.Platform, l.Subject, l.SubjectAlt)
		leadIDs = append(leadIDs, idRef{l.Platform, l.ID})
	}
	if err := z.unhash(ctx, tx, store.PurposeSubject, subjects); err != nil {
		return err
	}
	if err := z.unhash(ctx, tx, store.PurposeMessageID, msgIDs); err != nil {
		return err
	}
	return z.unhash(ctx, tx, store.PurposeLeadID, leadIDs)
}

func unixMilli(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// apply writes one batch: contacts, then messages, then what depends on them. Deletions
// go last so that a message and its unsend in the same delivery end deleted whatever
// their order.
//
// Every wait is for something taken in one global order, so concurrent deliveries
// cannot wait for each other in a cycle: contact locks ascending (locker), then message
// locks ascending in one statement, then messages, statuses and receipts in key order.
// Two deliveries carrying the same messages in different orders would otherwise each
// insert one and wait for the other's (a unique index makes an insert wait for a
// concurrent uncommitted insert of the same key). Rows are not inserted in delivery
// order, so their ids, which export follows, are allocated beforehand in delivery order:
// an export lists records as SQLite's does.
func apply(ctx context.Context, tx pgx.Tx, p *prepared, l *locker, res *store.CommitResult) error {
	// An identity change links identifiers as a contact row does: it takes their locks
	// with the contacts' (see erase).
	z := p.z
	var keys []int32
	for i := range p.b.Contacts {
		keys = append(keys, identifierKeys(z, &p.b.Contacts[i])...)
	}
	keys = append(keys, identityChangeKeys(z, p.b.Identities)...)
	if len(keys) > 0 {
		if err := l.first(ctx, keys); err != nil {
			return err
		}
	}
	if err := unhashBatch(ctx, tx, z, p.b); err != nil {
		return err
	}
	for i := range p.b.Contacts {
		if err := upsertContact(ctx, tx, z, l, &p.b.Contacts[i]); err != nil {
			return err
		}
		res.ContactsUpserted++
	}
	if err := insertIdentityChanges(ctx, tx, z, l, p.b.Identities, res); err != nil {
		return err
	}
	// After every contact lock and before any message lock: what this transaction
	// waits for here, no transaction waiting for it holds (see above).
	if err := insertLeads(ctx, tx, z, p.b.Leads, res); err != nil {
		return err
	}
	if len(p.messages) == 0 && len(p.statuses) == 0 && len(p.receipts) == 0 && len(p.b.Deletions) == 0 {
		return nil
	}
	ids, err := lockAndAllocate(ctx, tx, p)
	if err != nil {
		return err
	}

	// One round trip for every message insert; whether each was new decides its files.
	isNew := make([]bool, len(p.messages))
	if len(p.messages) > 0 {
		b := &pgx.Batch{}
		for _, i := range byKey(len(p.messages), func(i int) string { return messageKey(p.messages[i].rec.Platform, p.messages[i].id) }) {
			d := p.messages[i]
			m := d.rec
			b.Queue(sqlInsertMessage, keyText(string(m.Platform)), d.id, keyText(m.Channel), z.subject(m.Subject),
				z.nullable(store.PurposeSubject, m.SubjectAlt), unixMilli(m.Timestamp), d.json, ids.messages[i],
				z.nullable(store.PurposeMessageID, store.ReactsTo(m))).Exec(func(ct pgconn.CommandTag) error {
				isNew[i] = ct.RowsAffected() > 0
				return nil
			})
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("insert messages: %w", err)
		}
	}

	// A second round trip for the rest.
	b := &pgx.Batch{}
	received := time.Now().UnixMilli()
	var unsent []string // content addresses of the unsent messages' files
	for i, d := range p.messages {
		if !isNew[i] {
			res.MessagesDuplicate++
			continue
		}
		res.MessagesNew++
		// In delivery order: only this transaction can write files of a message it has
		// just inserted, so nothing here waits.
		for _, f := range p.files[fileKey(d.rec.Platform, d.rec.ID)] {
			fr := f.rec
			state, due := store.InitialFileState(fr), any(nil)
			if state == store.FilePending {
				due = int64(0) // due at once, whatever the clock: claims order by due time, then by id
			}
			b.Queue(sqlInsertFile, keyText(string(fr.Platform)), f.id, fr.Index, keyText(fr.Channel), z.subject(fr.Subject),
				z.nullable(store.PurposeSubject, fr.SubjectAlt), nullableKey(fr.MediaID), f.json, state, due, received).Exec(func(ct pgconn.CommandTag) error {
				res.FilesNew += int(ct.RowsAffected())
				return nil
			})
		}
	}
	for _, i := range byKey(len(p.statuses), func(i int) string { return messageKey(p.statuses[i].rec.Platform, p.statuses[i].id) }) {
		d := p.statuses[i]
		st := d.rec
		b.Queue(sqlUpsertStatus, keyText(string(st.Platform)), d.id, keyText(st.Channel), z.subject(st.Subject),
			z.nullable(store.PurposeSubject, st.SubjectAlt), meta.StateRank(st.State), d.json, ids.statuses[i], unixMilli(st.Timestamp)).Exec(func(ct pgconn.CommandTag) error {
			if ct.RowsAffected() == 0 {
				res.StatusesStale++
			} else {
				res.StatusesApplied++
			}
			return nil
		})
	}
	for _, i := range byKey(len(p.receipts), func(i int) string {
		r := p.receipts[i].rec
		return keyText(string(r.Platform)) + "\x00" + keyText(r.Channel) + "\x00" + z.subject(r.Subject) + "\x00" + keyText(r.State)
	}) {
		d := p.receipts[i]
		r := d.rec
		b.Queue(sqlUpsertReceipt, keyText(string(r.Platform)), keyText(r.Channel), z.subject(r.Subject), keyText(r.State), r.Watermark.UnixMilli(), d.json, ids.receipts[i])
	}
	now := time.Now().UnixMilli()
	dels := p.b.Deletions
	for _, i := range byKey(len(dels), func(i int) string { return messageKey(dels[i].Platform, z.msgID(dels[i].MessageID)) }) {
		platform, id := keyText(string(dels[i].Platform)), z.msgID(dels[i].MessageID)
		b.Queue(sqlTombstone, platform, id, now)
		b.Queue(sqlDeleteMessage, platform, id).Exec(func(ct pgconn.CommandTag) error {
			res.MessagesDeleted += int(ct.RowsAffected())
			return nil
		})
		b.Queue(sqlDeleteFiles, platform, id).Query(func(rows pgx.Rows) error {
			_, _, sums, err := deletedFiles(rows)
			unsent = append(unsent, sums...)
			return err
		})
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("store files, statuses, receipts and deletions: %w", err)
		}
	}
	// Last: the bytes' locks come after every row lock, as in StoreFileBytes.
	return dropBlobs(ctx, tx, unsent)
}

// messageKey is a message's unique key as stored (id: its stored form), as one
// string that sorts.
func messageKey(platform meta.Platform, id string) string {
	return keyText(string(platform)) + "\x00" + id // keyText and hashes leave no NUL
}

// byKey returns the indexes 0..n-1 in ascending key order; records with equal keys stay
// in delivery order, so the first of them is applied first, as in SQLite.
func byKey(n int, key func(i int) string) []int {
	keys := make([]string, n)
	idx := make([]int, n)
	for i := range n {
		keys[i], idx[i] = key(i), i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return strings.Compare(keys[a], keys[b]) })
	return idx
}

// rowIDs are the ids the batch's messages, statuses and receipts get if inserted, by
// their index in the batch.
type rowIDs struct{ messages, statuses, receipts []int64 }

// lockAndAllocate takes the message locks and allocates row ids, in one round trip.
//
// Message locks serialise a message's insert with its deletion. The insert checks for a
// tombstone and a deletion removes the message; without a lock, each could run before
// the other's commit and miss it, leaving an unsent message stored. So inserts take
// their bucket's lock shared (they never wait for each other) and deletions take it
// exclusive, all in one statement, in ascending order: no cycle can form among them.
func lockAndAllocate(ctx context.Context, tx pgx.Tx, p *prepared) (rowIDs, error) {
	exclusive := map[int32]bool{}
	for _, d := range p.messages {
		k := messageLockKey(keyText(string(d.rec.Platform)), keyText(d.rec.ID))
		if _, ok := exclusive[k]; !ok {
			exclusive[k] = false
		}
	}
	for _, del := range p.b.Deletions {
		exclusive[messageLockKey(keyText(string(del.Platform)), keyText(del.MessageID))] = true
	}
	b := &pgx.Batch{}
	if len(exclusive) > 0 { // statuses and receipts alone need none: their upserts are atomic
		keys := make([]int32, 0, len(exclusive))
		for k := range exclusive {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		modes := make([]bool, len(keys))
		for i, k := range keys {
			modes[i] = exclusive[k]
		}
		b.Queue(`SELECT CASE WHEN x THEN pg_advisory_xact_lock($1, k) ELSE pg_advisory_xact_lock_shared($1, k) END
			FROM unnest($2::int4[], $3::bool[]) AS t(k, x)`, lockMessage, keys, modes)
	}
	var ids rowIDs
	b.Queue(sqlAllocateIDs, len(p.messages), len(p.statuses), len(p.receipts)).QueryRow(func(row pgx.Row) error {
		return row.Scan(&ids.messages, &ids.statuses, &ids.receipts)
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return rowIDs{}, fmt.Errorf("lock messages and allocate ids: %w", err)
	}
	if len(ids.messages) != len(p.messages) || len(ids.statuses) != len(p.statuses) || len(ids.receipts) != len(p.receipts) {
		return rowIDs{}, errors.New("allocate ids: the server returned too few")
	}
	// Ascending whatever order the server produced them in: delivery order is id order.
	slices.Sort(ids.messages)
	slices.Sort(ids.statuses)
	slices.Sort(ids.receipts)
	return ids, nil
}

// identifiers are a contact's non-empty subject, wa_id and user id, as stored.
func identifiers(z sealer, c *meta.Contact) []string {
	var ids []string
	for _, id := range []string{c.Subject, c.WaID, c.UserID} {
		if id != "" {
			ids = append(ids, z.subject(id))
		}
	}
	return ids
}

func identifierKeys(z sealer, c *meta.Contact) []int32 {
	var keys []int32
	for _, id := range identifiers(z, c) {
		keys = append(keys, contactLockKey(id))
	}
	return keys
}

type contactRow struct {
	id  int64
	ids []string // subject, wa_id and user id as stored (keyText), the non-empty ones
	c   meta.Contact
}

// findContacts returns the stored contacts c matches by subject, wa_id or user id, in
// id order, locked for update. Empty wa_id/user id bind as NULL, which matches nothing.
func findContacts(ctx context.Context, tx pgx.Tx, z sealer, c *meta.Contact) ([]contactRow, error) {
	platform, channel := keyText(string(c.Platform)), keyText(c.Channel)
	rows, err := tx.Query(ctx, sqlFindContacts, platform, channel, z.subject(c.Subject),
		z.nullable(store.PurposeSubject, c.WaID), z.nullable(store.PurposeSubject, c.UserID))
	if err != nil {
		return nil, fmt.Errorf("find contacts: %w", err)
	}
	defer rows.Close()
	var found []contactRow
	for rows.Next() {
		var r contactRow
		var stored string
		var subject, waID, userID string
		if err := rows.Scan(&r.id, &subject, &waID, &userID, &stored); err != nil {
			return nil, fmt.Errorf("find contacts: scan: %w", err)
		}
		for _, id := range []string{subject, waID, userID} {
			if id != "" {
				r.ids = append(r.ids, id)
			}
		}
		d, err := z.OpenDoc(stored, "contacts", platform, channel, subject)
		if err != nil {
			return nil, fmt.Errorf("find contacts: %w", err)
		}
		if err := json.Unmarshal(d, &r.c); err != nil {
			return nil, fmt.Errorf("find contacts: decode: %w", err)
		}
		found = append(found, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find contacts: %w", err)
	}
	return found, nil
}

// findLockedContacts returns, for each probe, the stored contacts it matches (as
// findContacts), once the locks of every identifier of every row found are held: the
// lock set is extended and the rows read again until no row brings an identifier not
// locked (see upsertContact).
func findLockedContacts(ctx context.Context, tx pgx.Tx, z sealer, l *locker, probes ...*meta.Contact) ([][]contactRow, error) {
	found := make([][]contactRow, len(probes))
	for round := 0; ; round++ {
		var keys []int32
		for i, c := range probes {
			var err error
			if found[i], err = findContacts(ctx, tx, z, c); err != nil {
				return nil, err
			}
			for _, r := range found[i] {
				for _, id := range r.ids {
					keys = append(keys, contactLockKey(id))
				}
			}
		}
		if len(l.missing(keys)) == 0 {
			return found, nil
		}
		if round == maxLockRounds {
			return nil, fmt.Errorf("the identifiers kept changing over %d reads", maxLockRounds)
		}
		if err := l.lock(ctx, keys); err != nil {
			return nil, err
		}
	}
}

// maxLockRounds bounds how often one contact's lock set is extended; a person has at
// most a few identifiers, so more rounds mean rows changing faster than they are read.
const maxLockRounds = 8

// upsertContact stores c, merging with what is known, exactly as the SQLite backend
// does: a WhatsApp user may be known by wa_id, by business-scoped user id, or both; a
// payload that links the two merges the rows into one contact keyed by the
// business-scoped id.
//
// Race-freedom. The caller holds the locks of c's own identifiers. The rows c matches
// may carry further identifiers, which the merge moves onto the row it keeps: a
// concurrent upsert looking for one of those (and holding only its lock) would not see
// the kept row gain it until this commit, find nothing and insert a duplicate. So the
// lock set is extended to every identifier of every matched row, and the rows read again
// under the larger set, until no row brings an identifier not locked. Then every row
// this upsert reads or writes, and every identifier they hold, is locked: another
// upsert or erasure that could see or change any of them waits for this commit, and
// reads (each statement takes a fresh snapshot in READ COMMITTED) what it wrote.
// The locker extends the set in ascending order only; a key below one already held
// makes the whole transaction run again with that key among its first (errRelock).
func upsertContact(ctx context.Context, tx pgx.Tx, z sealer, l *locker, c *meta.Contact) error {
	res, err := findLockedContacts(ctx, tx, z, l, c)
	if err != nil {
		return fmt.Errorf("upsert contact: %w", err)
	}
	found := res[0]
	merged := *c
	if len(found) == 0 {
		return writeContact(ctx, tx, z, 0, &merged)
	}
	keep := found[0]
	for _, r := range found {
		if c.UserID != "" && r.c.UserID == c.UserID {
			keep = r
		}
	}
	// Older facts fill gaps; the incoming contact's non-empty fields win.
	for _, r := range found {
		fill(&merged.WaID, r.c.WaID)
		fill(&merged.UserID, r.c.UserID)
		fill(&merged.ParentUserID, r.c.ParentUserID)
		fill(&merged.Username, r.c.Username)
		fill(&merged.Name, r.c.Name)
	}
	if merged.UserID != "" {
		merged.Subject = merged.UserID
	}
	// The others go first: the kept row may take over one's subject (unique).
	for _, r := range found {
		if r.id != keep.id {
			if _, err := tx.Exec(ctx, sqlDeleteContact, r.id); err != nil {
				return fmt.Errorf("merge contacts: %w", err)
			}
		}
	}
	if len(found) == 1 && merged == keep.c {
		return nil // nothing new: skip the write
	}
	return writeContact(ctx, tx, z, keep.id, &merged)
}

func fill(dst *string, old string) {
	if *dst == "" {
		*dst = old
	}
}

// writeContact inserts c (id 0) or updates row id with it; its document is sealed
// under the row's new key, so a merge that changes the subject reseals it.
func writeContact(ctx context.Context, tx pgx.Tx, z sealer, id int64, c *meta.Contact) error {
	enc, err := docenc.Encode(c)
	if err != nil {
		return err
	}
	platform, channel, subject := keyText(string(c.Platform)), keyText(c.Channel), z.subject(c.Subject)
	d, err := z.seal(enc, "contacts", platform, channel, subject)
	if err != nil {
		return err
	}
	waID, userID := z.nullable(store.PurposeSubject, c.WaID), z.nullable(store.PurposeSubject, c.UserID)
	if id == 0 {
		_, err = tx.Exec(ctx, sqlInsertContact, platform, channel, subject, waID, userID, d)
	} else {
		_, err = tx.Exec(ctx, sqlUpdateContact, subject, waID, userID, d, id)
	}
	if err != nil {
		return fmt.Errorf("write contact: %w", err)
	}
	return nil
}

// subjectIDs resolves an identifier to every identifier the same person is stored under
// (as stored, i.e. through keyText): erasing by wa_id must also reach messages filed
// under the business-scoped id, and back, and erasing by a new phone number must reach
// what was filed under the old one (identity changes, followed through chains by
// store.ResolveIdentifiers). The subject's own identifier comes first.
//
// In a mixed store (seal.go) the set holds both forms of every clear identifier met,
// its clear stored form and its hash, so that rows of either form are found.
func subjectIDs(ctx context.Context, q querier, z sealer, s store.Subject, channel string) ([]string, error) {
	first := z.subject(s.ID)
	ids, err := store.ResolveIdentifiers(first, func(ids []string) ([]string, error) {
		if z.mixed {
			ids = z.lookupForms(store.PurposeSubject, append(ids, keyText(s.ID)))
		}
		var found []string
		for _, tb := range store.LinkTables {
			where, args := scopeWhere(s.Platform, channel, ids, tb.SubjectCols...)
			more, err := selectIdentifiers(ctx, q, tb.Name, tb.SubjectCols, where, args)
			if err != nil {
				return nil, err
			}
			found = append(found, more...)
		}
		return found, nil
	})
	if err != nil || !z.mixed {
		return ids, err
	}
	return z.lookupForms(store.PurposeSubject, append(ids, keyText(s.ID))), nil
}

// scopeWhere builds "(any of cols in ids) [AND platform ...] [AND channel ...]" with its
// arguments; an empty platform or channel matches every one. ids are stored forms.
// An absent filter is left out of the SQL rather than written as an always-true
// condition, so that the planner sees plain index conditions. Platform and channel are
// compared with IS NOT DISTINCT FROM (the same as = on these NOT NULL columns), which
// no index answers: the indexes that lead with them hold every row of a tenant, and the
// planner, misled by small or skewed tables, could otherwise pick them over the
// identifier indexes, which find the person's few rows whatever the store's size.
func scopeWhere(platform meta.Platform, channel string, ids []string, cols ...string) (string, []any) {
	args := []any{ids}
	var match []string
	for _, c := range cols {
		match = append(match, c+" = ANY($1)")
	}
	where := "(" + strings.Join(match, " OR ") + ")"
	if platform != "" {
		args = append(args, keyText(string(platform)))
		where += fmt.Sprintf(" AND platform IS NOT DISTINCT FROM $%d", len(args))
	}
	if channel != "" {
		args = append(args, keyText(channel))
		where += fmt.Sprintf(" AND channel IS NOT DISTINCT FROM $%d", len(args))
	}
	return where, args
}

// eraseDelete is erase's statement for one table.
func eraseDelete(table, where string) string { return "DELETE FROM " + table + " WHERE " + where }

// erase deletes one subject's records of the requested kinds (and channel), as the
// SQLite backend does, and writes the ledger entry.
//
// Like a contact upsert, it first locks every identifier of the person (extending the
// set until the contacts resolve to no new one): an upsert linking a new identifier to
// this person, or moving one between rows, either commits before the erasure reads the
// contacts or waits for it to commit. Without the locks, an erasure by wa_id racing the
// commit that links the wa_id to a business-scoped id could miss the records filed
// under the latter. Records that arrive after the erasure are stored afresh, as with
// SQLite.
func erase(ctx context.Context, tx pgx.Tx, z sealer, l *locker, req store.EraseRequest) (store.Counts, error) {
	if err := l.first(ctx, []int32{contactLockKey(z.subject(req.Subject.ID))}); err != nil {
		return store.Counts{}, err
	}
	var ids []string
	for round := 0; ; round++ {
		var err error
		if ids, err = subjectIDs(ctx, tx, z, req.Subject, req.Channel); err != nil {
			return store.Counts{}, err
		}
		var keys []int32
		for _, id := range ids {
			keys = append(keys, contactLockKey(id))
		}
		if len(l.missing(keys)) == 0 {
			break
		}
		if round == maxLockRounds {
			return store.Counts{}, fmt.Errorf("erase: the subject's identifiers kept changing over %d reads", maxLockRounds)
		}
		if err := l.lock(ctx, keys); err != nil {
			return store.Counts{}, err
		}
	}
	del := func(table string, cols ...string) (int, error) {
		where, args := scopeWhere(req.Subject.Platform, req.Channel, ids, cols...)
		ct, err := tx.Exec(ctx, eraseDelete(table, where), args...)
		if err != nil {
			return 0, fmt.Errorf("erase %s: %w", table, err)
		}
		return int(ct.RowsAffected()), nil
	}
	var c store.Counts
	var n int
	var err error
	if req.Scope.Has(store.ScopeContacts) {
		if c.Contacts, err = del("contacts", "subject", "wa_id", "user_id"); err != nil {
			return c, err
		}
		if n, err = del("identity_changes", store.IdentityChangeCols...); err != nil {
			return c, err
		}
		c.Contacts += n
		if n, err = del("leads", "subject", "subject_alt"); err != nil {
			return c, err
		}
		c.Contacts += n
	}
	if req.Scope.Has(store.ScopeMessages) {
		if c.Messages, err = del("messages", "subject", "subject_alt"); err != nil {
			return c, err
		}
		if c.Statuses, err = del("statuses", "subject", "subject_alt"); err != nil {
			return c, err
		}
		if n, err = del("receipts", "subject"); err != nil {
			return c, err
		}
		c.Statuses += n
	}
	if req.Scope.Has(store.ScopeFiles) {
		where, args := scopeWhere(req.Subject.Platform, req.Channel, ids, "subject", "subject_alt")
		if c.Files, c.FileBytes, err = deleteFiles(ctx, tx, eraseDelete("files", where)+returningBlob, args...); err != nil {
			return c, fmt.Errorf("erase files: %w", err)
		}
	}
	if req.SubjectRef != "" {
		var channel any
		if req.Channel != "" {
			channel = req.Channel
		}
		// The ledger keeps what it is given (it is exported as written): a keyed hash, a
		// platform and a channel name, never the identifier.
		_, err = tx.Exec(ctx, sqlInsertErasure, req.SubjectRef, string(req.Subject.Platform), channel,
			strings.Join(req.Scope.Names(), ","), unixMilli(req.RequestedAt), time.Now().UnixMilli(), c.Contacts, c.Messages, c.Statuses, c.Files, c.FileBytes)
		if err != nil {
			return c, fmt.Errorf("write erasure ledger: %w", err)
		}
	}
	return c, nil
}
