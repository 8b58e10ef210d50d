package store_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

func sealing(t *testing.T) (store.Sealing, map[string][]byte) {
	t.Helper()
	keys, data := newKeys(t)
	s, err := keys.Sealing()
	if err != nil {
		t.Fatal(err)
	}
	return s, data
}

// newKeys are the Keys of a new ring, and its Secret data.
func newKeys(t *testing.T) (*store.Keys, map[string][]byte) {
	t.Helper()
	data, err := datakey.NewSecretData(rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := datakey.Parse(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return store.NewKeys(datakey.Static{R: r}), data
}

func TestSealDocRoundTripAndIdentity(t *testing.T) {
	t.Parallel()
	s, _ := sealing(t)
	doc := []byte(`{"text":"Hola, soy Ana","subject":"15550101010"}`)
	stored, err := s.SealDoc(doc, "messages", "WhatsApp", "h:abc")
	if err != nil {
		t.Fatal(err)
	}
	if !store.IsSealedDoc(stored) || strings.Contains(stored, "Ana") || strings.HasPrefix(stored, "{") {
		t.Fatalf("sealed form %q", stored)
	}
	if v, err := store.DocVersion(stored); err != nil || v != 1 {
		t.Fatalf("DocVersion = %d, %v; want 1", v, err)
	}
	got, err := s.OpenDoc(stored, "messages", "WhatsApp", "h:abc")
	if err != nil || !bytes.Equal(got, doc) {
		t.Fatalf("OpenDoc = %q, %v", got, err)
	}
	// Moved to another row, another table, or split differently: it does not open.
	for _, id := range [][]string{{"messages", "WhatsApp", "h:abd"}, {"statuses", "WhatsApp", "h:abc"}, {"messages", "WhatsAp", "ph:abc"}} {
		if _, err := s.OpenDoc(stored, id[0], id[1:]...); !errors.Is(err, datakey.ErrAuthentication) {
			t.Errorf("OpenDoc under %q: %v, want ErrAuthentication", id, err)
		}
	}
	// A clear Sealing cannot open it; a broken sealed form is a format error.
	if _, err := (store.Sealing{}).OpenDoc(stored, "messages", "WhatsApp", "h:abc"); !errors.Is(err, store.ErrKeyUnavailable) {
		t.Errorf("clear OpenDoc of a sealed document: %v, want ErrKeyUnavailable", err)
	}
	if _, err := s.OpenDoc(store.SealedDocPrefix+"!!", "messages"); !errors.Is(err, datakey.ErrFormat) {
		t.Errorf("OpenDoc of a malformed sealed document: %v, want ErrFormat", err)
	}
}

// The bytes form opens like the text form, under the same identity only, is a third
// smaller, and tells its version; a clear Sealing has no bytes form.
func TestSealDocBytesOpensAsTheTextFormDoes(t *testing.T) {
	t.Parallel()
	s, _ := sealing(t)
	doc := []byte(`{"text":"Hola, soy Ana, ¿dónde está mi pedido número 4521?","subject":"15550101010"}`)
	b, err := s.SealDocBytes(doc, "messages", "WhatsApp", "h:abc")
	if err != nil {
		t.Fatal(err)
	}
	stored := string(b) // what a scan of the BLOB into a string gives
	text, err := s.SealDoc(doc, "messages", "WhatsApp", "h:abc")
	if err != nil {
		t.Fatal(err)
	}
	if !store.IsSealedDoc(stored) || bytes.Contains(b, []byte("Ana")) || len(b)*4 > len(text)*3+8 {
		t.Fatalf("bytes form %q (%d bytes against %d as text)", b, len(b), len(text))
	}
	if v, err := store.DocVersion(stored); err != nil || v != 1 {
		t.Fatalf("DocVersion = %d, %v; want 1", v, err)
	}
	if got, err := s.OpenDoc(stored, "messages", "WhatsApp", "h:abc"); err != nil || !bytes.Equal(got, doc) {
		t.Fatalf("OpenDoc = %q, %v", got, err)
	}
	if _, err := s.OpenDoc(stored, "messages", "WhatsApp", "h:abd"); !errors.Is(err, datakey.ErrAuthentication) {
		t.Errorf("OpenDoc under another row: %v, want ErrAuthentication", err)
	}
	if _, err := (store.Sealing{}).OpenDoc(stored, "messages", "WhatsApp", "h:abc"); !errors.Is(err, store.ErrKeyUnavailable) {
		t.Errorf("clear OpenDoc of a sealed document: %v, want ErrKeyUnavailable", err)
	}
	if _, err := (store.Sealing{}).SealDocBytes(doc, "messages"); !errors.Is(err, store.ErrKeyUnavailable) {
		t.Errorf("clear SealDocBytes: %v, want ErrKeyUnavailable", err)
	}
}

func TestClearPassesThrough(t *testing.T) {
	t.Parallel()
	s, _ := sealing(t)
	var plain store.Sealing
	doc := []byte(`{"a":1}`)
	if got, err := plain.SealDoc(doc, "t"); err != nil || got != string(doc) {
		t.Errorf("clear SealDoc = %q, %v", got, err)
	}
	// A document stored in clear opens with or without a ring: the migration reads it.
	for _, sl := range []store.Sealing{plain, s} {
		if got, err := sl.OpenDoc(string(doc), "t"); err != nil || !bytes.Equal(got, doc) {
			t.Errorf("OpenDoc of a clear document = %q, %v", got, err)
		}
	}
	if v, err := store.DocVersion(string(doc)); err != nil || v != 0 {
		t.Errorf("DocVersion of a clear document = %d, %v; want 0", v, err)
	}
	if got := plain.ID(store.PurposeMessageID, "wamid.1"); got != "wamid.1" {
		t.Errorf("clear ID = %q", got)
	}
	if got, err := plain.SealBytes([]byte("abc"), "addr", 0, true); err != nil || string(got) != "abc" {
		t.Errorf("clear SealBytes = %q, %v", got, err)
	}
	if plain.Encrypts() || plain.ActiveVersion() != 0 || !s.Encrypts() || s.ActiveVersion() != 1 {
		t.Error("Encrypts/ActiveVersion")
	}
	if k := store.NewKeys(nil); k.Enabled() {
		t.Error("NewKeys(nil) encrypts")
	}
}

// Every JSON document a store writes is an object: it never starts like a sealed one,
// and no hashed identifier looks like a platform's identifier.
func TestPrefixesNeverCollideWithClear(t *testing.T) {
	t.Parallel()
	s, _ := sealing(t)
	for _, clear := range []string{`{}`, `{"~1:":1}`, ` {"a":1}`} {
		if store.IsSealedDoc(clear) {
			t.Errorf("%q reads as sealed", clear)
		}
	}
	for _, id := range []string{"wamid.HBgL", "15550101010", "24681357902468135", "m_abc", "17841400000000000"} {
		if store.IsHashedID(id) {
			t.Errorf("platform identifier %q reads as hashed", id)
		}
		h := s.ID(store.PurposeSubject, id)
		if !store.IsHashedID(h) || strings.Contains(h, id) || h == s.ID(store.PurposeMessageID, id) {
			t.Errorf("ID(%q) = %q", id, h)
		}
		if h != s.ID(store.PurposeSubject, id) {
			t.Errorf("ID(%q) is not stable", id)
		}
	}
	if s.ID(store.PurposeSubject, "") != "" {
		t.Error("the empty identifier hashes")
	}
	if got := s.IDs(store.PurposeSubject, []string{"a", ""}); len(got) != 2 || !store.IsHashedID(got[0]) || got[1] != "" {
		t.Errorf("IDs = %q", got)
	}
}

func TestSealedChunksStayInPlace(t *testing.T) {
	t.Parallel()
	s, _ := sealing(t)
	c, err := s.SealBytes([]byte("chunk zero"), "h:addr", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.OpenBytes(c, "h:addr", 0, false); err != nil || string(got) != "chunk zero" {
		t.Fatalf("OpenBytes = %q, %v", got, err)
	}
	for _, tc := range []struct {
		addr  string
		index int
		last  bool
	}{{"h:other", 0, false}, {"h:addr", 1, false}, {"h:addr", 0, true}} {
		if _, err := s.OpenBytes(c, tc.addr, tc.index, tc.last); !errors.Is(err, datakey.ErrAuthentication) {
			t.Errorf("chunk opened as %+v: %v, want ErrAuthentication", tc, err)
		}
	}
}

func TestSealingFollowsTheSource(t *testing.T) {
	t.Parallel()
	if _, err := store.NewKeys(datakey.Static{}).Sealing(); !errors.Is(err, store.ErrKeyUnavailable) || !errors.Is(err, datakey.ErrNotLoaded) {
		t.Errorf("Sealing without a ring: %v, want ErrKeyUnavailable wrapping ErrNotLoaded", err)
	}
	s1, data := sealing(t)
	stored, err := s1.SealDoc([]byte(`{"x":1}`), "t", "k")
	if err != nil {
		t.Fatal(err)
	}
	data2, _, err := datakey.Rotate(data, rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := datakey.Parse(data2, nil)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := store.NewKeys(datakey.Static{R: r2}).Sealing()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.OpenDoc(stored, "t", "k"); err != nil || string(got) != `{"x":1}` {
		t.Errorf("a version-1 document under the rotated ring: %q, %v", got, err)
	}
	again, err := s2.SealDoc([]byte(`{"x":1}`), "t", "k")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := store.DocVersion(again); v != 2 {
		t.Errorf("sealed after the rotation under version %d, want 2", v)
	}
	if s1.ID(store.PurposeSubject, "u") != s2.ID(store.PurposeSubject, "u") {
		t.Error("a keyed hash changed with the rotation")
	}
}

// Ids of Meta's fixtures: two messages from and one status of a message to the same
// WhatsApp customer (15555550142), and a message of another customer.
const (
	waInbound1 = "wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQUFVRDAwMQAA=="
	waInbound2 = "wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQUJUTjAwMQAA=="
	waOutbound = "wamid.HBgLMTU1NTU1NTAxNDIVAgARGBI5QjdFMkMxRjBBNDQ4RDNFNTcA"
	waOther    = "wamid.HBgLNDQ3NzAwOTAwMTIzFQIAERgSNUY0QjFDOEQyRTlBMDdCMzE2AA=="
)

func TestMessageConversationReadsTheCustomerOfAWhatsAppID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ id, want string }{
		{waInbound1, "15555550142"},
		{waOutbound, "15555550142"},
		{waOther, "44770090012"},                     // the record says 11 digits: its first 11
		{"wamid.gBGGSFcCNEOPAgkO78EG9PEBhRs", ""},    // an older, opaque form
		{"wamid.HBgL", ""},                           // too short
		{"wamid.HBgLMTU1NTU1NTA!NDIVAgAS", ""},       // not base64
		{"wamid.HBgLQUJDREVGR0hJSktMTU5P", ""},       // letters where digits belong
		{"m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jd", ""}, // Messenger
		{"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlE", ""},   // Instagram
	} {
		if got := string(store.MessageConversation(tc.id)); got != tc.want {
			t.Errorf("MessageConversation(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
}

// groupOf is the conversation group a hashed message id starts with.
func groupOf(t *testing.T, stored string) []byte {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(stored, store.HashedIDPrefix))
	if err != nil || !store.IsHashedID(stored) {
		t.Fatalf("hashed id %q: %v", stored, err)
	}
	if len(raw) != store.MessageGroupSize+store.HashedIDSize {
		t.Fatalf("hashed message id %q holds %d bytes, want %d", stored, len(raw), store.MessageGroupSize+store.HashedIDSize)
	}
	return raw[:store.MessageGroupSize]
}

// In the grouped form, the ids of one conversation share their first bytes (so they
// share index pages) and differ after them; the flat form is the id's hash alone, the
// same in both forms, which is what lets a store keep the form it was created with.
func TestGroupedMessageIDsShareTheirConversationsGroup(t *testing.T) {
	t.Parallel()
	keys, _ := newKeys(t)
	grouped, err := keys.Sealing()
	if err != nil {
		t.Fatal(err)
	}
	flat, err := keys.WithMessageIDs(store.MessageIDsFlat).Sealing()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := keys.WithMessageIDs(store.MessageIDsGrouped).Sealing(); again.ID(store.PurposeMessageID, waInbound1) != grouped.ID(store.PurposeMessageID, waInbound1) {
		t.Error("Keys without a form do not hash message ids in the grouped form")
	}
	g1, g2, gOut := grouped.ID(store.PurposeMessageID, waInbound1), grouped.ID(store.PurposeMessageID, waInbound2), grouped.ID(store.PurposeMessageID, waOutbound)
	if g1 == g2 || g1 == gOut {
		t.Fatalf("distinct ids hash alike: %q %q %q", g1, g2, gOut)
	}
	if !bytes.Equal(groupOf(t, g1), groupOf(t, g2)) || !bytes.Equal(groupOf(t, g1), groupOf(t, gOut)) {
		t.Errorf("one conversation's ids in different groups: %q %q %q", g1, g2, gOut)
	}
	// The group is the conversation's keyed hash: another ring groups differently, and
	// among 64 customers' ids nearly all groups differ.
	groups := map[string]bool{}
	for i := range 64 {
		digits := strconv.Itoa(447700000000 + i)
		rec := append([]byte{0x1c, 0x18, byte(len(digits))}, digits...)
		id := "wamid." + base64.StdEncoding.EncodeToString(append(rec, 0x15, 0x02, 0x00, 0x12, 0x18, 0x14, 'A', 'B', 0))
		groups[string(groupOf(t, grouped.ID(store.PurposeMessageID, id)))] = true
	}
	if len(groups) < 60 {
		t.Errorf("64 conversations fell into %d groups", len(groups))
	}
	// An id without a known conversation is its own group, still the same each time.
	mid := grouped.ID(store.PurposeMessageID, "m_abc")
	if again := grouped.ID(store.PurposeMessageID, "m_abc"); again != mid {
		t.Errorf("hashing is not deterministic: %q then %q", mid, again)
	}
	groupOf(t, mid)
	// The flat form: the id's hash without a group, exactly the grouped form's tail.
	f1 := flat.ID(store.PurposeMessageID, waInbound1)
	rawF, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(f1, store.HashedIDPrefix))
	rawG, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(g1, store.HashedIDPrefix))
	if len(rawF) != store.HashedIDSize || !bytes.Equal(rawF, rawG[store.MessageGroupSize:]) {
		t.Errorf("flat form %q is not the grouped form %q without its group", f1, g1)
	}
	// Only message ids are grouped.
	if a, b := grouped.ID(store.PurposeSubject, "15555550142"), flat.ID(store.PurposeSubject, "15555550142"); a != b {
		t.Errorf("subjects hash by form: %q, %q", a, b)
	}
	if keys.MessageIDs() != store.MessageIDsUnknown || keys.WithMessageIDs(store.MessageIDsFlat).MessageIDs() != store.MessageIDsFlat {
		t.Error("MessageIDs does not report the form set")
	}
	var none *store.Keys
	if none.WithMessageIDs(store.MessageIDsFlat) != nil {
		t.Error("clear Keys gained a form")
	}
}
