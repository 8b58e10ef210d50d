package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/docenc"
)

// txn is one group transaction on the writer connection, with the prepared statements
// bound to it on first use.
type txn struct {
	tx    *sql.Tx
	s     *Store
	cache map[string]*sql.Stmt
	// contact cache changes, applied to Store.contacts only if the transaction commits
	pending    map[contactKey]*meta.Contact
	eraseCache bool
	// unref are the content addresses of the bytes of file records this transaction
	// deleted (deletingFiles): removed once it is on disk, unless another record still
	// names them (removeUnreferenced).
	unref []string
	// sl seals, opens and hashes for the request being applied (its Sealing).
	sl store.Sealing
	// resealedBytes counts the file bytes the reseal pass sealed in this transaction:
	// a batch ends early once it has sealed resealBytesPerBatch (reseal.go).
	resealedBytes int64
	// keepBlobs: conversions leave file bytes and their address as they are (mixedConvert).
	keepBlobs bool
}

// deletingFiles runs fn, one request's op, and returns the content addresses of the file
// records it deleted.
func (t *txn) deletingFiles(fn func() error) ([]string, error) {
	before := len(t.unref)
	err := fn()
	return slices.Clone(t.unref[before:]), err
}

// deleteFiles runs the prepared statement name, a deletion of file rows returning their
// content addresses and sizes (returningBlob), and returns how many rows went and the
// size of their bytes; the addresses join t.unref.
func (t *txn) deleteFiles(ctx context.Context, st *sql.Stmt, args ...any) (int, int64, error) {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return 0, 0, err
	}
	return t.scanDeletedFiles(rows)
}

// scanDeletedFiles reads rows of returningBlob and closes them.
func (t *txn) scanDeletedFiles(rows *sql.Rows) (int, int64, error) {
	defer rows.Close()
	n, bytes := 0, int64(0)
	for rows.Next() {
		var sum string
		var size int64
		if err := rows.Scan(&sum, &size); err != nil {
			return n, bytes, err
		}
		n++
		if sum != "" {
			bytes += size
			t.unref = append(t.unref, sum)
		}
	}
	return n, bytes, rows.Err()
}

// contactKey is a contact row's unique key.
type contactKey struct {
	platform meta.Platform
	channel  string
	subject  string
}

// maxCachedContacts bounds the writer's cache of stored contacts; past it the cache starts
// over (a miss only costs one indexed lookup).
const maxCachedContacts = 100_000

func (t *txn) cachedContact(k contactKey) (meta.Contact, bool) {
	if c, ok := t.pending[k]; ok {
		if c == nil {
			return meta.Contact{}, false
		}
		return *c, true
	}
	if t.eraseCache {
		// An erasure earlier in this group deleted rows by identifier; the store's cache
		// may still hold them until the group commits.
		return meta.Contact{}, false
	}
	c, ok := t.s.contacts[k]
	return c, ok
}

func (t *txn) rememberContact(c meta.Contact) {
	t.pending[contactKey{c.Platform, c.Channel, c.Subject}] = &c
}

func (t *txn) forgetContact(k contactKey) { t.pending[k] = nil }

// commitCache folds the committed transaction's contact changes into the store's cache.
func (t *txn) commitCache() {
	if t.eraseCache || len(t.s.contacts)+len(t.pending) > maxCachedContacts {
		clear(t.s.contacts)
	}
	for k, c := range t.pending {
		if c == nil {
			delete(t.s.contacts, k)
		} else {
			t.s.contacts[k] = *c
		}
	}
}

func (t *txn) stmt(ctx context.Context, name string) *sql.Stmt {
	st, ok := t.cache[name]
	if !ok {
		st = t.tx.StmtContext(ctx, t.s.stmts[name])
		t.cache[name] = st
	}
	return st
}

// prepared is q prepared in this transaction, once: statements built at run time (with
// one placeholder per identifier) that a batch runs many times.
func (t *txn) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := t.cache[q]; ok {
		return st, nil
	}
	st, err := t.tx.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	t.cache[q] = st
	return st, nil
}

func (t *txn) exec(ctx context.Context, name string, args ...any) (int64, error) {
	res, err := t.stmt(ctx, name).ExecContext(ctx, args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("%s: rows affected: %w", name, err)
	}
	return n, nil
}

// doc is a record with its stored forms: the sealed (or clear) document and the
// stored values of its identifier columns.
type doc[T any] struct {
	rec  *T
	json any // sealDoc's stored form
	// msgID, subject, subjectAlt (and reactsTo for messages) as stored: keyed hashes
	// when the store encrypts.
	msgID, subject, subjectAlt, reactsTo string
}

// prepared is a batch with its documents already encoded and sealed, under sl.
type prepared struct {
	b        *meta.Batch
	sl       store.Sealing
	messages []doc[meta.Message]
	files    map[string][]doc[meta.File] // by message id: stored only with a new message
	statuses []doc[meta.Status]
	receipts []doc[meta.Receipt]
}

// seal encodes rec and seals it as the record of table whose unique key's stored values
// are key (sealDoc).
func seal[T any](sl store.Sealing, rec *T, table string, key ...string) (any, error) {
	b, err := docenc.Encode(rec)
	if err != nil {
		return nil, err
	}
	return sealDoc(sl, b, table, key...)
}

// sealDoc is a document's stored form: the sealed bytes as a BLOB when the store
// encrypts (SQLite keeps a value's own type in any column, and base64 text would make
// every sealed row a third larger, hence more pages written per delivery), the JSON as
// TEXT in clear. Readers scan either into a string for store.Sealing.OpenDoc.
func sealDoc(sl store.Sealing, doc []byte, table string, key ...string) (any, error) {
	if !sl.Encrypts() {
		return string(doc), nil
	}
	return sl.SealDocBytes(doc, table, key...)
}

func prepare(b *meta.Batch, sl store.Sealing) (*prepared, error) {
	p := &prepared{b: b, sl: sl, files: map[string][]doc[meta.File]{}}
	var err error
	for i := range b.Messages {
		m := &b.Messages[i]
		d := doc[meta.Message]{rec: m, msgID: sl.ID(store.PurposeMessageID, m.ID), subject: sl.ID(store.PurposeSubject, m.Subject),
			subjectAlt: sl.ID(store.PurposeSubject, m.SubjectAlt), reactsTo: sl.ID(store.PurposeMessageID, store.ReactsTo(m))}
		if d.json, err = seal(sl, m, "messages", string(m.Platform), d.msgID); err != nil {
			return nil, err
		}
		p.messages = append(p.messages, d)
	}
	for i := range b.Files {
		f := &b.Files[i]
		d := doc[meta.File]{rec: f, msgID: sl.ID(store.PurposeMessageID, f.MessageID), subject: sl.ID(store.PurposeSubject, f.Subject),
			subjectAlt: sl.ID(store.PurposeSubject, f.SubjectAlt)}
		if d.json, err = seal(sl, f, "files", string(f.Platform), d.msgID, strconv.Itoa(f.Index)); err != nil {
			return nil, err
		}
		k := string(f.Platform) + "\x00" + f.MessageID
		p.files[k] = append(p.files[k], d)
	}
	for i := range b.Statuses {
		st := &b.Statuses[i]
		d := doc[meta.Status]{rec: st, msgID: sl.ID(store.PurposeMessageID, st.MessageID), subject: sl.ID(store.PurposeSubject, st.Subject),
			subjectAlt: sl.ID(store.PurposeSubject, st.SubjectAlt)}
		if d.json, err = seal(sl, st, "statuses", string(st.Platform), d.msgID); err != nil {
			return nil, err
		}
		p.statuses = append(p.statuses, d)
	}
	for i := range b.Receipts {
		r := &b.Receipts[i]
		d := doc[meta.Receipt]{rec: r, subject: sl.ID(store.PurposeSubject, r.Subject)}
		if d.json, err = seal(sl, r, "receipts", string(r.Platform), r.Channel, d.subject, r.State); err != nil {
			return nil, err
		}
		p.receipts = append(p.receipts, d)
	}
	return p, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func unixMilli(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// apply writes one batch. Deletions go last so that a message and its unsend in the same
// delivery end deleted whatever their order.
func (t *txn) apply(ctx context.Context, p *prepared, res *store.CommitResult) error {
	for i := range p.b.Contacts {
		if err := t.upsertContact(ctx, &p.b.Contacts[i]); err != nil {
			return err
		}
		res.ContactsUpserted++
	}
	received := time.Now().UnixMilli()
	insert := "insertMessage"
	if !t.s.hasTombstones {
		insert = "insertMessageNoTombstones"
	}
	for _, d := range p.messages {
		m := d.rec
		if err := t.mixedConvert(ctx, string(m.Platform), m.ID); err != nil {
			return err
		}
		n, err := t.exec(ctx, insert, string(m.Platform), d.msgID, m.Channel, d.subject, nullable(d.subjectAlt), unixMilli(m.Timestamp), d.json, nullable(d.reactsTo))
		if err != nil {
			return err
		}
		if n == 0 {
			res.MessagesDuplicate++
			continue
		}
		res.MessagesNew++
		for _, f := range p.files[string(m.Platform)+"\x00"+m.ID] {
			fr := f.rec
			state, due := store.InitialFileState(fr), any(nil)
			if state == store.FilePending {
				due = 0 // due at once, whatever the clock: claims order by due time, then by id
			}
			n, err := t.exec(ctx, "insertFile", string(fr.Platform), f.msgID, fr.Index, fr.Channel, f.subject, nullable(f.subjectAlt), nullable(fr.MediaID), f.json,
				state, due, received)
			if err != nil {
				return err
			}
			res.FilesNew += int(n)
		}
	}
	for _, d := range p.statuses {
		s := d.rec
		if err := t.mixedConvert(ctx, string(s.Platform), s.MessageID); err != nil {
			return err
		}
		n, err := t.exec(ctx, "upsertStatus", string(s.Platform), d.msgID, s.Channel, d.subject, nullable(d.subjectAlt), meta.StateRank(s.State), d.json, unixMilli(s.Timestamp))
		if err != nil {
			return err
		}
		if n == 0 {
			res.StatusesStale++
		} else {
			res.StatusesApplied++
		}
	}
	for _, d := range p.receipts {
		r := d.rec
		if t.s.mixed.Load() && r.Subject != d.subject {
			if _, err := t.resealWhere(ctx, encTableOf("receipts"), whereReceipts,
				[]any{string(r.Platform), r.Channel, r.Subject}, false); err != nil {
				return err
			}
		}
		if _, err := t.exec(ctx, "upsertReceipt", string(r.Platform), r.Channel, d.subject, r.State, r.Watermark.UnixMilli(), d.json); err != nil {
			return err
		}
	}
	if err := t.insertIdentityChanges(ctx, p.b.Identities, res); err != nil {
		return err
	}
	if err := t.insertLeads(ctx, p.b.Leads, res); err != nil {
		return err
	}
	for _, del := range p.b.Deletions {
		// Set before the insert and never reset (even on rollback): erring towards
		// checking costs a little time, erring the other way would resurrect messages.
		t.s.hasTombstones = true
		if err := t.mixedConvert(ctx, string(del.Platform), del.MessageID); err != nil {
			return err
		}
		id := t.sl.ID(store.PurposeMessageID, del.MessageID)
		if _, err := t.exec(ctx, "tombstone", string(del.Platform), id, time.Now().UnixMilli()); err != nil {
			return err
		}
		n, err := t.exec(ctx, "deleteMessage", string(del.Platform), id)
		if err != nil {
			return err
		}
		res.MessagesDeleted += int(n)
		if _, _, err := t.deleteFiles(ctx, t.stmt(ctx, "deleteFiles"), string(del.Platform), id); err != nil {
			return fmt.Errorf("delete files: %w", err)
		}
	}
	return nil
}

type contactRow struct {
	id int64
	// stored: the subject, wa_id and user id columns as stored (keyed hashes when the
	// store encrypts); c is the opened document.
	stored [3]string
	c      meta.Contact
}

// findContacts returns the stored contacts c matches by subject, wa_id or user id, in
// id order. Empty wa_id/user id bind as NULL, which matches nothing. While the store
// is mixed, rows stored under c's identifiers in clear are converted first.
func (t *txn) findContacts(ctx context.Context, c *meta.Contact) ([]contactRow, error) {
	if t.s.mixed.Load() {
		for _, id := range []string{c.Subject, c.WaID, c.UserID} {
			if err := t.convertContacts(ctx, c.Platform, c.Channel, id); err != nil {
				return nil, err
			}
		}
	}
	return t.findStoredContacts(ctx, c.Platform, c.Channel,
		t.sl.ID(store.PurposeSubject, c.Subject), t.sl.ID(store.PurposeSubject, c.WaID), t.sl.ID(store.PurposeSubject, c.UserID))
}

// convertContacts brings the contact rows stored under the clear identifier id
// (subject, wa_id or user id) to the hashed form.
func (t *txn) convertContacts(ctx context.Context, platform meta.Platform, channel, id string) error {
	if id == "" || store.IsHashedID(id) || !t.sl.Encrypts() {
		return nil
	}
	for _, col := range []string{"subject", "wa_id", "user_id"} {
		if _, err := t.resealWhere(ctx, encTableOf("contacts"), whereContactBy(col),
			[]any{id, string(platform), channel}, false); err != nil {
			return err
		}
	}
	return nil
}

// whereContactBy finds the contact rows of one platform and channel by one of their
// identifier columns.
func whereContactBy(col string) string { return col + " = ? AND platform = ? AND channel = ?" }

// findStoredContacts is findContacts by stored values.
func (t *txn) findStoredContacts(ctx context.Context, platform meta.Platform, channel, subject, waID, userID string) ([]contactRow, error) {
	rows, err := t.stmt(ctx, "findContacts").QueryContext(ctx, string(platform), channel, subject, nullable(waID), nullable(userID))
	if err != nil {
		return nil, fmt.Errorf("find contacts: %w", err)
	}
	defer rows.Close()
	var found []contactRow
	for rows.Next() {
		var r contactRow
		var d string
		if err := rows.Scan(&r.id, &r.stored[0], &r.stored[1], &r.stored[2], &d); err != nil {
			return nil, fmt.Errorf("find contacts: scan: %w", err)
		}
		doc, err := t.sl.OpenDoc(d, "contacts", string(platform), channel, r.stored[0])
		if err != nil {
			return nil, fmt.Errorf("find contacts: %w", err)
		}
		if err := json.Unmarshal(doc, &r.c); err != nil {
			return nil, fmt.Errorf("find contacts: decode: %w", err)
		}
		found = append(found, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find contacts: %w", err)
	}
	return found, nil
}

// upsertContact stores c, merging with what is known. A WhatsApp user may be known by
// wa_id, by business-scoped user id, or both; a payload that links the two merges the
// rows into one contact keyed by the business-scoped id.
func (t *txn) upsertContact(ctx context.Context, c *meta.Contact) error {
	key := contactKey{c.Platform, c.Channel, c.Subject}
	// Fast path: the row stored under this subject is exactly c. Every upsert merges all
	// rows sharing an identifier, so no other row can match c: nothing to do.
	if stored, ok := t.cachedContact(key); ok && stored == *c {
		return nil
	}
	found, err := t.findContacts(ctx, c)
	if err != nil {
		return err
	}
	merged := *c
	if len(found) == 0 {
		t.rememberContact(merged)
		return t.writeContact(ctx, 0, &merged)
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
	for _, r := range found {
		if r.id != keep.id {
			if _, err := t.exec(ctx, "deleteContact", r.id); err != nil {
				return err
			}
			t.forgetContact(contactKey{r.c.Platform, r.c.Channel, r.c.Subject})
		}
	}
	t.forgetContact(contactKey{keep.c.Platform, keep.c.Channel, keep.c.Subject})
	t.rememberContact(merged)
	if len(found) == 1 && merged == keep.c {
		return nil // nothing new: skip the write
	}
	return t.writeContact(ctx, keep.id, &merged)
}

func fill(dst *string, old string) {
	if *dst == "" {
		*dst = old
	}
}

// writeContact stores c in row id (0: a new row), sealed under its (new) key.
func (t *txn) writeContact(ctx context.Context, id int64, c *meta.Contact) error {
	subject, waID, userID := t.sl.ID(store.PurposeSubject, c.Subject), t.sl.ID(store.PurposeSubject, c.WaID), t.sl.ID(store.PurposeSubject, c.UserID)
	d, err := seal(t.sl, c, "contacts", string(c.Platform), c.Channel, subject)
	if err != nil {
		return err
	}
	if id == 0 {
		_, err = t.exec(ctx, "insertContact", string(c.Platform), c.Channel, subject, nullable(waID), nullable(userID), d)
	} else {
		_, err = t.exec(ctx, "updateContact", subject, nullable(waID), nullable(userID), d, id)
	}
	return err
}

// subjectIDs resolves an identifier to every identifier the same person is stored under,
// in their stored forms: erasing by wa_id must also reach messages filed under the
// business-scoped id, and back, and erasing by a new phone number must reach what was
// filed under the old one (identity changes, followed through chains by
// store.ResolveIdentifiers). With Keys the walk runs over keyed hashes, since every
// comparison is between stored values; while the store is mixed it also reads the
// clear identifiers from the link rows' documents, so that rows in either form are found.
func subjectIDs(ctx context.Context, q querier, sl store.Sealing, mixed bool, s store.Subject, channel string) ([]string, error) {
	first := sl.ID(store.PurposeSubject, s.ID)
	var extra []string
	if mixed && first != s.ID {
		extra = []string{s.ID}
	}
	return store.ResolveIdentifiers(first, func(ids []string) ([]string, error) {
		ids, extra = append(ids, extra...), nil
		var found []string
		for _, tb := range store.LinkTables {
			where, args := subjectWhere(s.Platform, channel, ids, tb.SubjectCols...)
			var more []string
			var err error
			if mixed {
				more, err = linkedInDocs(ctx, q, sl, tb.Name, where, args)
			} else {
				more, err = selectIdentifiers(ctx, q, tb.Name, tb.SubjectCols, where, args)
			}
			if err != nil {
				return nil, err
			}
			found = append(found, more...)
		}
		return found, nil
	})
}
