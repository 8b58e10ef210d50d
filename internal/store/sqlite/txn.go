package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
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

type doc[T any] struct {
	rec  *T
	json []byte
}

// prepared is a batch with its documents already encoded.
type prepared struct {
	b        *meta.Batch
	messages []doc[meta.Message]
	files    map[string][]doc[meta.File] // by message id: stored only with a new message
	statuses []doc[meta.Status]
	receipts []doc[meta.Receipt]
}

func encode[T any](rec *T) (doc[T], error) {
	b, err := docenc.Encode(rec)
	if err != nil {
		return doc[T]{}, err
	}
	return doc[T]{rec, b}, nil
}

func prepare(b *meta.Batch) (*prepared, error) {
	p := &prepared{b: b, files: map[string][]doc[meta.File]{}}
	for i := range b.Messages {
		d, err := encode(&b.Messages[i])
		if err != nil {
			return nil, err
		}
		p.messages = append(p.messages, d)
	}
	for i := range b.Files {
		d, err := encode(&b.Files[i])
		if err != nil {
			return nil, err
		}
		k := string(b.Files[i].Platform) + "\x00" + b.Files[i].MessageID
		p.files[k] = append(p.files[k], d)
	}
	for i := range b.Statuses {
		d, err := encode(&b.Statuses[i])
		if err != nil {
			return nil, err
		}
		p.statuses = append(p.statuses, d)
	}
	for i := range b.Receipts {
		d, err := encode(&b.Receipts[i])
		if err != nil {
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
		n, err := t.exec(ctx, insert, string(m.Platform), m.ID, m.Channel, m.Subject, nullable(m.SubjectAlt), unixMilli(m.Timestamp), d.json, reactsTo(m))
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
			n, err := t.exec(ctx, "insertFile", string(fr.Platform), fr.MessageID, fr.Index, fr.Channel, fr.Subject, nullable(fr.SubjectAlt), nullable(fr.MediaID), f.json,
				state, due, received)
			if err != nil {
				return err
			}
			res.FilesNew += int(n)
		}
	}
	for _, d := range p.statuses {
		s := d.rec
		n, err := t.exec(ctx, "upsertStatus", string(s.Platform), s.MessageID, s.Channel, s.Subject, nullable(s.SubjectAlt), meta.StateRank(s.State), d.json, unixMilli(s.Timestamp))
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
		if _, err := t.exec(ctx, "upsertReceipt", string(r.Platform), r.Channel, r.Subject, r.State, r.Watermark.UnixMilli(), d.json); err != nil {
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
		if _, err := t.exec(ctx, "tombstone", string(del.Platform), del.MessageID, time.Now().UnixMilli()); err != nil {
			return err
		}
		n, err := t.exec(ctx, "deleteMessage", string(del.Platform), del.MessageID)
		if err != nil {
			return err
		}
		res.MessagesDeleted += int(n)
		if _, _, err := t.deleteFiles(ctx, t.stmt(ctx, "deleteFiles"), string(del.Platform), del.MessageID); err != nil {
			return fmt.Errorf("delete files: %w", err)
		}
	}
	return nil
}

type contactRow struct {
	id int64
	c  meta.Contact
}

// findContacts returns the stored contacts c matches by subject, wa_id or user id, in
// id order. Empty wa_id/user id bind as NULL, which matches nothing.
func (t *txn) findContacts(ctx context.Context, c *meta.Contact) ([]contactRow, error) {
	rows, err := t.stmt(ctx, "findContacts").QueryContext(ctx, string(c.Platform), c.Channel, c.Subject, nullable(c.WaID), nullable(c.UserID))
	if err != nil {
		return nil, fmt.Errorf("find contacts: %w", err)
	}
	defer rows.Close()
	var found []contactRow
	for rows.Next() {
		var r contactRow
		var d []byte
		if err := rows.Scan(&r.id, &d); err != nil {
			return nil, fmt.Errorf("find contacts: scan: %w", err)
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

func (t *txn) writeContact(ctx context.Context, id int64, c *meta.Contact) error {
	d, err := docenc.Encode(c)
	if err != nil {
		return err
	}
	if id == 0 {
		_, err = t.exec(ctx, "insertContact", string(c.Platform), c.Channel, c.Subject, nullable(c.WaID), nullable(c.UserID), d)
	} else {
		_, err = t.exec(ctx, "updateContact", c.Subject, nullable(c.WaID), nullable(c.UserID), d, id)
	}
	return err
}

// subjectIDs resolves an identifier to every identifier the same person is stored under:
// erasing by wa_id must also reach messages filed under the business-scoped id, and back,
// and erasing by a new phone number must reach what was filed under the old one
// (identity changes, followed through chains by store.ResolveIdentifiers).
func subjectIDs(ctx context.Context, q querier, s store.Subject, channel string) ([]string, error) {
	return store.ResolveIdentifiers(s.ID, func(ids []string) ([]string, error) {
		var found []string
		for _, tb := range store.LinkTables {
			where, args := subjectWhere(s.Platform, channel, ids, tb.SubjectCols...)
			more, err := selectIdentifiers(ctx, q, tb.Name, tb.SubjectCols, where, args)
			if err != nil {
				return nil, err
			}
			found = append(found, more...)
		}
		return found, nil
	})
}
