package store_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

func sealing(t *testing.T) (store.Sealing, map[string][]byte) {
	t.Helper()
	data, err := datakey.NewSecretData(rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := datakey.Parse(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.NewKeys(datakey.Static{R: r}).Sealing()
	if err != nil {
		t.Fatal(err)
	}
	return s, data
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
