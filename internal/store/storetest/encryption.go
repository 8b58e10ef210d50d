package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// EncBackend opens one backend for the encryption suite (RunEncryption). A location
// is what the backend keeps one store in: a directory for SQLite, a database name for
// PostgreSQL. Raw, Copy and Swap are called while no store is open on the location.
type EncBackend struct {
	// New is a fresh empty location.
	New func(t *testing.T) string
	// Open opens the store at loc; nil keys: clear. The test closes it.
	Open func(t *testing.T, loc string, keys *store.Keys) store.Store
	// Raw is every byte at rest (SQLite: the database, its -wal and the files
	// directory; PostgreSQL: a dump of every table).
	Raw func(t *testing.T, loc string) []byte
	// Copy is a backup copy of loc taken now, as a new location. For SQLite it may be
	// called while a store is open on loc (a snapshot of a running volume).
	Copy func(t *testing.T, loc string) string
	// Swap copies the stored document of one row of table over the document of
	// another row of the same table, beneath the store (raw SQL): a sealed record
	// moved to another record.
	Swap func(t *testing.T, loc, table string)
	// ForgetMessageIDForm removes, beneath the store, the record of how it hashes
	// message ids: the state of a store written before that record existed.
	ForgetMessageIDForm func(t *testing.T, loc string)
}

// NewKeyData is a fresh key ring's Secret data (version 1, active).
func NewKeyData(t testing.TB) map[string][]byte {
	t.Helper()
	data, err := datakey.NewSecretData(rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// KeysOf is the store Keys of a ring's Secret data, held by a datakey.Static Source.
func KeysOf(t testing.TB, data map[string][]byte) *store.Keys {
	t.Helper()
	r, err := datakey.Parse(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return store.NewKeys(datakey.Static{R: r})
}

// NewKeys is the Keys of a fresh ring: for running the other suites with encryption on.
func NewKeys(t testing.TB) *store.Keys { return KeysOf(t, NewKeyData(t)) }

// Fixture values: each is unique, so that finding one in the raw bytes of a store
// means it is stored in clear.
const (
	encChannel   = "encsuite-channel"
	encFBChannel = "encsuite-page"
	encWaID      = "15557770101"
	encNewWaID   = "15557770202"
	encPSID      = "24681357902468135"
	encMsgID     = "wamid.ENCFIXmsg0001"
	encMidID     = "m_ENCFIXmid0002"
	encOutID     = "wamid.ENCFIXout0003"
	encSysID     = "wamid.ENCFIXsys0004"
	encLeadID    = "ENCFIXlead0005"
	encText      = "encfix text: my card ends 4242"
	encMidText   = "encfix messenger text: call me later"
	encRaw       = "encfix raw fragment body"
	encName      = "Zoltan Encfixname"
	encFBName    = "Encfix Messenger Person"
	encUsername  = "zoltan_encfixuser"
	encToken     = "encfix-token-NMT-4c8e1d"
	encRef       = "encfix-referral-ref"
	encCaption   = "encfix caption of the photo"
	encURL       = "https://cdn.example/encfix-attachment-url"
)

// encFileBytes are the fixture file's bytes: more than two 64 KiB chunks, none alike.
var encFileBytes = func() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 150_000; i++ {
		b.WriteString("encfix file bytes, line ")
		b.WriteString(strings.Repeat("x", i%17))
		b.WriteString(time.Duration(i).String())
		b.WriteByte('\n')
	}
	return b.Bytes()
}()

// encSecrets are what no raw byte of an encrypting store may hold.
func encSecrets() []string {
	sum := sha256.Sum256(encFileBytes)
	return []string{encWaID, encNewWaID, encPSID, encMsgID, encMidID, encOutID, encSysID, encLeadID,
		encText, encMidText, encRaw, encName, encFBName, encUsername, encToken, encRef, encCaption, encURL,
		"encfix file bytes", hex.EncodeToString(sum[:])}
}

var encT0 = time.Date(2026, 9, 1, 10, 0, 0, 0, time.UTC)

// encBatch is one delivery of every kind of record, holding every fixture value.
func encBatch() meta.Batch {
	wa := meta.Message{Platform: meta.WhatsApp, Channel: encChannel, ID: encMsgID, Subject: encWaID, Direction: meta.Inbound,
		Type: "image", Text: encText, Timestamp: encT0,
		Raw: json.RawMessage(`{"from":"` + encWaID + `","id":"` + encMsgID + `","text":{"body":"` + encRaw + `"}}`)}
	fb := meta.Message{Platform: meta.Messenger, Channel: encFBChannel, ID: encMidID, Subject: encPSID, Direction: meta.Inbound,
		Type: "image", Text: encMidText, Timestamp: encT0.Add(time.Second)}
	return meta.Batch{
		Contacts: []meta.Contact{
			{Platform: meta.WhatsApp, Channel: encChannel, Subject: encWaID, WaID: encWaID, Name: encName, Username: encUsername},
			{Platform: meta.Messenger, Channel: encFBChannel, Subject: encPSID, Name: encFBName},
		},
		Messages: []meta.Message{wa, fb},
		Files: []meta.File{
			{Platform: meta.WhatsApp, Channel: encChannel, MessageID: encMsgID, Subject: encWaID, Kind: "image",
				MediaID: "media-enc-clear", MIMEType: "image/jpeg", Caption: encCaption},
			{Platform: meta.Messenger, Channel: encFBChannel, MessageID: encMidID, Subject: encPSID, Kind: "image", URL: encURL},
		},
		Statuses: []meta.Status{{Platform: meta.WhatsApp, Channel: encChannel, MessageID: encOutID, Subject: encWaID,
			State: "delivered", Timestamp: encT0.Add(2 * time.Second)}},
		Receipts: []meta.Receipt{{Platform: meta.Messenger, Channel: encFBChannel, Subject: encPSID, State: "read",
			Watermark: encT0.Add(3 * time.Second)}},
		Identities: []meta.IdentityChange{{Platform: meta.WhatsApp, Channel: encChannel, MessageID: encSysID,
			Type: "user_changed_number", OldWaID: encWaID, NewWaID: encNewWaID, Timestamp: encT0.Add(4 * time.Second)}},
		Leads: []meta.Lead{{Platform: meta.Messenger, Channel: encFBChannel, ID: encLeadID, Subject: encPSID,
			Event: meta.LeadOptin, Source: meta.SourceNotifications, Type: "notification_messages", Ref: encRef,
			Timestamp: encT0.Add(5 * time.Second), HasToken: true, Token: encToken}},
	}
}

var encFileKey = store.FileKey{Platform: meta.WhatsApp, MessageID: encMsgID}

// fillEnc commits the fixtures and stores the WhatsApp file's bytes.
func fillEnc(t *testing.T, s store.Store) {
	t.Helper()
	b := encBatch()
	if _, err := s.Commit(context.Background(), &b); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if _, err := s.StoreFileBytes(context.Background(), encFileKey, bytes.NewReader(encFileBytes), 1<<20, "image/jpeg"); err != nil {
		t.Fatalf("StoreFileBytes: %v", err)
	}
}

// exportJSON is a store's whole export as JSON lines.
func exportJSON(s store.Store) (string, error) {
	var out strings.Builder
	err := s.Export(context.Background(), store.Filter{}, func(r store.Record) error {
		b, err := json.Marshal(r)
		out.Write(b)
		out.WriteByte('\n')
		return err
	})
	return out.String(), err
}

func readFile(s store.Store, k store.FileKey) ([]byte, error) {
	rc, err := s.OpenFile(context.Background(), k)
	if err != nil {
		return nil, err
	}
	defer rc.Close() //nolint:errcheck // read-only
	return io.ReadAll(rc)
}

// checkReadable: the export holds every fixture value that is exported (the lead
// token never is: LeadToken gives it), and the file's bytes read back.
func checkReadable(t *testing.T, s store.Store) {
	t.Helper()
	out, err := exportJSON(s)
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	for _, v := range encSecrets() {
		if v == encToken || v == "encfix file bytes" {
			continue
		}
		if !strings.Contains(out, v) {
			t.Errorf("the export lacks %q", v)
		}
	}
	tok, err := s.LeadToken(context.Background(), meta.Messenger, encLeadID)
	if err != nil || string(tok) != encToken {
		t.Errorf("LeadToken = %v, want the fixture's token", err)
	}
	got, err := readFile(s, encFileKey)
	if err != nil || !bytes.Equal(got, encFileBytes) {
		t.Errorf("OpenFile: %d bytes, %v; want the fixture's %d bytes", len(got), err, len(encFileBytes))
	}
}

// checkNoClear: no fixture value is in the raw bytes at loc.
func checkNoClear(t *testing.T, b EncBackend, loc string, skip ...string) {
	t.Helper()
	raw := b.Raw(t, loc)
	if len(raw) == 0 {
		t.Fatal("Raw returned nothing")
	}
	for _, v := range encSecrets() {
		if bytes.Contains(raw, []byte(v)) && !strings.Contains(strings.Join(skip, "\x00"), v) {
			t.Errorf("the bytes at rest hold %q in clear", v)
		}
	}
}

func resealer(t *testing.T, s store.Store) store.Resealer {
	t.Helper()
	r, ok := s.(store.Resealer)
	if !ok {
		t.Fatalf("%T does not implement store.Resealer", s)
	}
	return r
}

// resealAll runs the pass to its end in batches of limit; it reports how many calls it
// took.
func resealAll(t *testing.T, s store.Store, limit int) int {
	t.Helper()
	r := resealer(t, s)
	for calls := 1; calls < 10_000; calls++ {
		_, done, err := r.Reseal(context.Background(), limit)
		if err != nil {
			t.Fatalf("Reseal: %v", err)
		}
		if done {
			return calls
		}
	}
	t.Fatal("Reseal never reports done")
	return 0
}

func encState(t *testing.T, s store.Store) store.EncryptionState {
	t.Helper()
	st, err := resealer(t, s).EncryptionState(context.Background())
	if err != nil {
		t.Fatalf("EncryptionState: %v", err)
	}
	return st
}

func closeStore(t *testing.T, s store.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// everything is a store's whole export and its file's bytes.
type everything struct {
	Dump
	File []byte
}

func snapshot(t *testing.T, s store.Store) everything {
	t.Helper()
	f, err := readFile(s, encFileKey)
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	return everything{Export(t, s, nil), f}
}

// RunEncryption runs the encryption-at-rest suite (docs/encryption.md) on a backend.
func RunEncryption(t *testing.T, b EncBackend) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, EncBackend)
	}{
		{"NothingInClearAtRest", testEncNothingClear},
		{"CopyUnreadableWithoutTheKey", testEncCopyWithoutKey},
		{"MovedDocumentFailsToOpen", testEncMoved},
		{"RotationResealsToTheNewVersion", testEncRotation},
		{"ClearStoreMigrates", testEncMigration},
		{"PassResumesAfterACrash", testEncCrashMidPass},
		{"MessageIDFormIsKept", testEncMessageIDForms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, b)
		})
	}
}

// (a) Committed with Keys, nothing readable is at rest, and the same ring reads it
// all; a store created with Keys is fully encrypted from the start.
func testEncNothingClear(t *testing.T, b EncBackend) {
	loc := b.New(t)
	keys := NewKeys(t)
	s := b.Open(t, loc, keys)
	fillEnc(t, s)
	checkReadable(t, s)
	if st := encState(t, s); !st.FullyEncrypted() || st.ActiveVersion != 1 {
		t.Errorf("a store created with Keys: %+v, want fully encrypted under version 1", st)
	}
	if _, done, err := resealer(t, s).Reseal(context.Background(), 10); err != nil || !done {
		t.Errorf("Reseal on a store encrypted from the start: done %v, %v; want done", done, err)
	}
	closeStore(t, s)
	checkNoClear(t, b, loc)
	s = b.Open(t, loc, keys)
	defer closeStore(t, s)
	checkReadable(t, s)
}

// (b) A copy taken before the key is destroyed is beyond use without it: with the
// ring gone, with another tenant's ring, or opened in clear, nothing reads.
func testEncCopyWithoutKey(t *testing.T, b EncBackend) {
	loc := b.New(t)
	s := b.Open(t, loc, NewKeys(t))
	fillEnc(t, s)
	backup := b.Copy(t, loc)
	closeStore(t, s)
	for _, tc := range []struct {
		name string
		keys *store.Keys
	}{
		{"RingDestroyed", store.NewKeys(datakey.Static{})},
		{"AnotherTenantsRing", NewKeys(t)},
		{"Clear", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := b.Open(t, b.Copy(t, backup), tc.keys)
			defer closeStore(t, c)
			out, err := exportJSON(c)
			if err == nil {
				t.Error("the export of the copy succeeded")
			}
			for _, v := range encSecrets() {
				if strings.Contains(out, v) {
					t.Errorf("the export of the copy shows %q", v)
				}
			}
			if got, err := readFile(c, encFileKey); err == nil || bytes.Contains(got, []byte("encfix")) {
				t.Errorf("OpenFile of the copy: %d bytes, %v; want an error", len(got), err)
			}
			if tok, _ := c.LeadToken(context.Background(), meta.Messenger, encLeadID); string(tok) == encToken {
				t.Error("LeadToken of the copy gives the token")
			}
			if tc.name == "RingDestroyed" {
				m := msg("wamid.after-destroy", "u-after", 1)
				_, err := c.Commit(context.Background(), &meta.Batch{Messages: []meta.Message{m}})
				if !errors.Is(err, store.ErrKeyUnavailable) {
					t.Errorf("Commit without the ring: %v, want ErrKeyUnavailable", err)
				}
				if _, _, err := resealer(t, c).Reseal(context.Background(), 10); !errors.Is(err, store.ErrKeyUnavailable) {
					t.Errorf("Reseal without the ring: %v, want ErrKeyUnavailable", err)
				}
			}
		})
	}
}

// (c) A sealed document copied over another row's does not open there.
func testEncMoved(t *testing.T, b EncBackend) {
	for _, table := range []string{"messages", "contacts"} {
		t.Run(table, func(t *testing.T) {
			loc := b.New(t)
			keys := NewKeys(t)
			s := b.Open(t, loc, keys)
			commit(t, s, meta.Batch{
				Contacts: []meta.Contact{{Platform: meta.WhatsApp, Channel: ch, Subject: "u1", Name: "One"},
					{Platform: meta.WhatsApp, Channel: ch, Subject: "u2", Name: "Two"}},
				Messages: []meta.Message{msg("m1", "u1", 1), msg("m2", "u2", 2)},
			})
			closeStore(t, s)
			b.Swap(t, loc, table)
			s = b.Open(t, loc, keys)
			defer closeStore(t, s)
			if _, err := exportJSON(s); !errors.Is(err, datakey.ErrAuthentication) {
				t.Errorf("export after moving a %s document: %v, want ErrAuthentication", table, err)
			}
		})
	}
}

// (d) After a rotation both versions read; the pass brings everything to the new
// one, after which a ring without the old version reads it all.
func testEncRotation(t *testing.T, b EncBackend) {
	ctx := context.Background()
	loc := b.New(t)
	v1 := NewKeyData(t)
	s := b.Open(t, loc, KeysOf(t, v1))
	fillEnc(t, s)
	before := snapshot(t, s)
	closeStore(t, s)

	v2, next, err := datakey.Rotate(v1, rand.Reader, nil)
	if err != nil || next != 2 {
		t.Fatalf("Rotate: %v, %d", err, next)
	}
	s = b.Open(t, loc, KeysOf(t, v2))
	// A record under version 2 beside the ones under version 1.
	commit(t, s, meta.Batch{Messages: []meta.Message{msg("m-v2", "u-v2", 9)}})
	if st := encState(t, s); st.ActiveVersion != 2 || st.SealedVersion != 1 || st.FullyEncrypted() {
		t.Errorf("after the rotation: %+v, want active 2, sealed 1", st)
	}
	checkReadable(t, s)
	if n := len(Export(t, s, nil).Messages); n != len(before.Messages)+1 {
		t.Errorf("%d messages after the rotation, want %d", n, len(before.Messages)+1)
	}
	resealAll(t, s, 2)
	if st := encState(t, s); st.ActiveVersion != 2 || st.SealedVersion != 2 || !st.FullyEncrypted() {
		t.Errorf("after the pass: %+v, want sealed 2", st)
	}
	// Idempotent: a finished pass finds nothing more to do.
	if n, done, err := resealer(t, s).Reseal(ctx, 100); err != nil || !done || n != 0 {
		t.Errorf("Reseal after the pass: %d, %v, %v; want 0 changed, done", n, done, err)
	}
	closeStore(t, s)

	only2 := maps.Clone(v2)
	delete(only2, datakey.KeyPrefix+"1")
	s = b.Open(t, loc, KeysOf(t, only2))
	defer closeStore(t, s)
	after := snapshot(t, s)
	after.Messages = slicesWithout(after.Messages, "m-v2")
	if !reflect.DeepEqual(before, after) {
		t.Errorf("under version 2 alone the store reads differently:\nbefore %+v\nafter  %+v", before, after)
	}
}

func slicesWithout(ms []meta.Message, id string) []meta.Message {
	var out []meta.Message
	for _, m := range ms {
		if m.ID != id {
			out = append(out, m)
		}
	}
	return out
}

// (e) A store created in clear reads at once when opened with Keys, keeps
// deduplicating and erasing what it stored in clear, and the pass encrypts it all.
func testEncMigration(t *testing.T, b EncBackend) {
	ctx := context.Background()
	loc := b.New(t)
	s := b.Open(t, loc, nil)
	fillEnc(t, s)
	commit(t, s, meta.Batch{
		Contacts: []meta.Contact{{Platform: meta.WhatsApp, Channel: ch, Subject: "erase-me", WaID: "erase-me", Name: "Erasable"}},
		Messages: []meta.Message{msg("m-erase", "erase-me", 1)},
	})
	if st := encState(t, s); st.Encrypts || st.FullyEncrypted() {
		t.Errorf("a clear store: %+v", st)
	}
	before := snapshot(t, s)
	closeStore(t, s)

	keys := NewKeys(t)
	s = b.Open(t, loc, keys)
	defer func() { closeStore(t, s) }()
	if got := snapshot(t, s); !reflect.DeepEqual(got, before) {
		t.Errorf("opened with Keys, the clear store reads differently:\nbefore %+v\nafter  %+v", before, got)
	}
	if st := encState(t, s); !st.Encrypts || st.ActiveVersion != 1 || st.FullyEncrypted() {
		t.Errorf("a clear store opened with Keys: %+v, want encrypting, not fully", st)
	}
	// Redeliveries of what was stored in clear are duplicates: no record is stored twice.
	again := encBatch()
	if res := commit(t, s, again); res.MessagesDuplicate != len(again.Messages) || res.MessagesNew != 0 || res.IdentityChanges != 0 ||
		res.LeadsNew != 0 || res.FilesNew != 0 || res.StatusesApplied != 0 {
		t.Errorf("redelivery of clear-stored records: %+v, want every message a duplicate, nothing new", res)
	}
	if d := Export(t, s, nil); len(d.Messages) != len(before.Messages) || len(d.Statuses) != len(before.Statuses) ||
		len(d.Receipts) != len(before.Receipts) || len(d.Files) != len(before.Files) ||
		len(d.IdentityChanges) != len(before.IdentityChanges) || len(d.Leads) != len(before.Leads) {
		t.Errorf("after redelivering clear-stored records: %+v\nwant the counts of %+v", d, before.Dump)
	}
	// Erasure by subject reaches rows stored in clear.
	if _, err := s.Erase(ctx, store.EraseRequest{Subject: store.Subject{Platform: meta.WhatsApp, ID: "erase-me"}}); err != nil {
		t.Fatalf("Erase: %v", err)
	}
	if d := Export(t, s, &store.Subject{ID: "erase-me"}); len(d.Messages)+len(d.Contacts) != 0 {
		t.Errorf("after erasure the subject still has %d messages, %d contacts", len(d.Messages), len(d.Contacts))
	}
	if d := Export(t, s, &store.Subject{ID: encPSID}); len(d.Messages) != 1 || len(d.Leads) != 1 {
		t.Errorf("export by a clear-stored subject: %d messages, %d leads; want 1, 1", len(d.Messages), len(d.Leads))
	}
	linked := Export(t, s, &store.Subject{ID: encNewWaID})
	if len(linked.Messages) != 1 {
		t.Errorf("export by a subject linked through an identity change: %d messages, want 1", len(linked.Messages))
	}
	resealAll(t, s, 3)
	if st := encState(t, s); !st.FullyEncrypted() {
		t.Errorf("after the pass: %+v, want fully encrypted", st)
	}
	checkReadable(t, s)
	closeStore(t, s)
	checkNoClear(t, b, loc)
	s = b.Open(t, loc, keys)
	checkReadable(t, s)
	if d := Export(t, s, &store.Subject{ID: encNewWaID}); !reflect.DeepEqual(d, linked) {
		t.Errorf("export by a subject linked through an identity change after the pass:\n%+v\nwant\n%+v", d, linked)
	}
}

// (f) A pass cut short (the store closed, or a copy of the store taken mid-pass)
// resumes where it was and completes, losing nothing.
func testEncCrashMidPass(t *testing.T, b EncBackend) {
	loc := b.New(t)
	s := b.Open(t, loc, nil)
	fillEnc(t, s)
	before := snapshot(t, s)
	closeStore(t, s)

	data := NewKeyData(t)
	s = b.Open(t, loc, KeysOf(t, data))
	for range 3 {
		if _, done, err := resealer(t, s).Reseal(context.Background(), 1); err != nil || done {
			t.Fatalf("Reseal of one record: done %v, %v; want not done", done, err)
		}
	}
	mid := b.Copy(t, loc)
	closeStore(t, s)
	for _, at := range []string{loc, mid} {
		s := b.Open(t, at, KeysOf(t, data))
		if st := encState(t, s); st.FullyEncrypted() {
			t.Errorf("mid-pass: %+v, want not fully encrypted", st)
		}
		if got := snapshot(t, s); !reflect.DeepEqual(got, before) {
			t.Errorf("mid-pass the store reads differently:\nbefore %+v\nafter  %+v", before, got)
		}
		resealAll(t, s, 2)
		if st := encState(t, s); !st.FullyEncrypted() {
			t.Errorf("after the resumed pass: %+v, want fully encrypted", st)
		}
		if got := snapshot(t, s); !reflect.DeepEqual(got, before) {
			t.Errorf("after the resumed pass the store reads differently:\nbefore %+v\nafter  %+v", before, got)
		}
		closeStore(t, s)
		checkNoClear(t, b, at)
	}
}

// A store keeps the form of hashed message ids it was created with: one sealed in the
// flat form (before the grouped form existed, whether or not it recorded its form)
// still finds its records by message id when opened by this version, so a redelivery
// is a duplicate; a new store groups. Each form is looked for in the raw bytes.
func testEncMessageIDForms(t *testing.T, b EncBackend) {
	ctx := context.Background()
	keys := NewKeys(t)
	flat, err := keys.WithMessageIDs(store.MessageIDsFlat).Sealing()
	if err != nil {
		t.Fatal(err)
	}
	grouped, err := keys.WithMessageIDs(store.MessageIDsGrouped).Sealing()
	if err != nil {
		t.Fatal(err)
	}
	stored := func(sl store.Sealing) []byte { return []byte(sl.ID(store.PurposeMessageID, encMsgID)) }
	for _, forget := range []bool{false, true} {
		t.Run(fmt.Sprintf("recorded=%t", !forget), func(t *testing.T) {
			loc := b.New(t)
			s := b.Open(t, loc, keys.WithMessageIDs(store.MessageIDsFlat))
			fillEnc(t, s)
			closeStore(t, s)
			if forget {
				b.ForgetMessageIDForm(t, loc)
			}
			if raw := b.Raw(t, loc); !bytes.Contains(raw, stored(flat)) || bytes.Contains(raw, stored(grouped)) {
				t.Fatal("the flat store does not hold its message id in the flat form alone")
			}
			s = b.Open(t, loc, keys) // this version's Keys: no form asked for
			defer closeStore(t, s)
			again := encBatch()
			res, err := s.Commit(ctx, &again)
			if err != nil {
				t.Fatalf("Commit: %v", err)
			}
			if res.MessagesNew != 0 || res.MessagesDuplicate != len(again.Messages) {
				t.Errorf("redelivery to the flat store: %d new, %d duplicates; want 0 and %d", res.MessagesNew, res.MessagesDuplicate, len(again.Messages))
			}
			checkReadable(t, s)
		})
	}
	loc := b.New(t)
	s := b.Open(t, loc, keys)
	fillEnc(t, s)
	closeStore(t, s)
	if raw := b.Raw(t, loc); !bytes.Contains(raw, stored(grouped)) || bytes.Contains(raw, stored(flat)) {
		t.Fatal("a new store does not hold its message id in the grouped form alone")
	}
}
