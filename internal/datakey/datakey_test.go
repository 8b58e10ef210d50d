package datakey_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
)

func newRing(t testing.TB) (*datakey.Ring, map[string][]byte) {
	t.Helper()
	data, err := datakey.NewSecretData(rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := datakey.Parse(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, data
}

func TestSealedRecordOpensForItsOwnIdentityOnly(t *testing.T) {
	t.Parallel()
	r, _ := newRing(t)
	msg := []byte("Hola, ¿tienen la talla 38?")
	id := datakey.Identity("messages", "wamid.HBgLMTU1NTAxMDEwMTAVAgASGBQzQTk")
	sealed, err := r.Seal(msg, id)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, msg[:8]) {
		t.Fatal("sealed record holds the plaintext")
	}
	if len(sealed) != len(msg)+datakey.Overhead {
		t.Fatalf("sealed is %d bytes, want %d", len(sealed), len(msg)+datakey.Overhead)
	}
	got, err := r.Open(sealed, id)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Open = %q, %v; want the message", got, err)
	}
	// Moved to another record: another primary key, another table, or an identity
	// that concatenates alike.
	for _, other := range [][]byte{
		datakey.Identity("messages", "wamid.other"),
		datakey.Identity("contacts", "wamid.HBgLMTU1NTAxMDEwMTAVAgASGBQzQTk"),
		datakey.Identity("messageswamid.HBgLMTU1NTAxMDEwMTAVAgASGBQzQTk"),
		nil,
	} {
		if _, err := r.Open(sealed, other); !errors.Is(err, datakey.ErrAuthentication) {
			t.Errorf("Open under identity %q = %v, want ErrAuthentication", other, err)
		}
	}
}

func TestTamperedRecordFails(t *testing.T) {
	t.Parallel()
	r, _ := newRing(t)
	id := datakey.Identity("files", "sha256:abc")
	sealed, err := r.Seal(bytes.Repeat([]byte{0x42}, 200), id)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		if _, err := r.Open(bad, id); err == nil {
			t.Fatalf("a record with byte %d flipped opened", i)
		}
	}
	if _, err := r.Open(sealed[:len(sealed)-1], id); err == nil {
		t.Fatal("a truncated record opened")
	}
	if _, err := r.Open(sealed[:datakey.Overhead-1], id); !errors.Is(err, datakey.ErrFormat) {
		t.Fatalf("a record shorter than the overhead: %v, want ErrFormat", err)
	}
}

func TestOldVersionStaysReadableAfterRotationAndNewRecordsUseTheNewOne(t *testing.T) {
	t.Parallel()
	r1, data := newRing(t)
	id := datakey.Identity("contacts", "WhatsApp", "15550101010")
	old, err := r1.Seal([]byte("Ana"), id)
	if err != nil {
		t.Fatal(err)
	}
	before := maps.Clone(data)
	rotated, v, err := datakey.Rotate(data, rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(data, before, bytes.Equal) {
		t.Fatal("Rotate changed its input")
	}
	if v != 2 || string(rotated[datakey.ActiveKey]) != "2" || !bytes.Equal(rotated["key-1"], data["key-1"]) || !bytes.Equal(rotated[datakey.IndexKey], data[datakey.IndexKey]) {
		t.Fatalf("Rotate gave version %d, active %q; want 2 with key-1 and the index key kept", v, rotated[datakey.ActiveKey])
	}
	r2, err := datakey.Parse(rotated, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r2.Open(old, id); err != nil || string(got) != "Ana" {
		t.Fatalf("old record after rotation: %q, %v", got, err)
	}
	fresh, err := r2.Seal([]byte("Ana"), id)
	if err != nil {
		t.Fatal(err)
	}
	for sealed, want := range map[string]datakey.Version{string(old): 1, string(fresh): 2} {
		if got, err := datakey.VersionOf([]byte(sealed)); err != nil || got != want {
			t.Errorf("VersionOf = %d, %v; want %d", got, err, want)
		}
	}
	// The ring before rotation cannot read what the new version sealed.
	if _, err := r1.Open(fresh, id); !errors.Is(err, datakey.ErrUnknownVersion) {
		t.Fatalf("old ring opening a new record: %v, want ErrUnknownVersion", err)
	}
	if got := r2.Versions(); len(got) != 2 || got[0] != 1 || got[1] != 2 || r2.ActiveVersion() != 2 {
		t.Fatalf("Versions = %v, active %d", got, r2.ActiveVersion())
	}
}

func TestAnotherOrDestroyedKeyCannotOpen(t *testing.T) {
	t.Parallel()
	r, data := newRing(t)
	id := datakey.Identity("messages", "m1")
	sealed, err := r.Seal([]byte("secret text"), id)
	if err != nil {
		t.Fatal(err)
	}
	// Another tenant's ring: same version number, another key.
	other, _ := newRing(t)
	if _, err := other.Open(sealed, id); !errors.Is(err, datakey.ErrAuthentication) {
		t.Fatalf("another ring: %v, want ErrAuthentication", err)
	}
	// The key version destroyed (dropped after re-encryption): what is left cannot open it.
	rotated, _, err := datakey.Rotate(data, rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	delete(rotated, "key-1")
	r2, err := datakey.Parse(rotated, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Open(sealed, id); !errors.Is(err, datakey.ErrUnknownVersion) {
		t.Fatalf("destroyed version: %v, want ErrUnknownVersion", err)
	}
	// The whole Secret destroyed: there is no ring to parse.
	if _, err := datakey.Parse(nil, nil); err == nil {
		t.Fatal("an empty Secret parsed as a ring")
	}
}

func TestNoncesAreUnique(t *testing.T) {
	t.Parallel()
	r, _ := newRing(t)
	id := datakey.Identity("messages", "same")
	seen := map[string]bool{}
	for range 10000 {
		sealed, err := r.Seal([]byte("same text"), id)
		if err != nil {
			t.Fatal(err)
		}
		nonce := string(sealed[5:17])
		if seen[nonce] {
			t.Fatal("a nonce repeated")
		}
		seen[nonce] = true
	}
}

func TestKeyedHashIsStableAcrossRotationAndDiffersByTenantAndPurpose(t *testing.T) {
	t.Parallel()
	r1, data := newRing(t)
	rotated, _, err := datakey.Rotate(data, rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := datakey.Parse(rotated, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := newRing(t)
	v := []byte("15550101010")
	h := r1.Hash("subject", v)
	if len(h) != 32 {
		t.Fatalf("hash is %d bytes", len(h))
	}
	if !bytes.Equal(h, r2.Hash("subject", v)) {
		t.Fatal("the keyed hash changed with rotation: dedupe and lookup would break")
	}
	if !bytes.Equal(h, r1.Hash("subject", v)) {
		t.Fatal("the keyed hash is not deterministic")
	}
	for what, x := range map[string][]byte{
		"another tenant":  other.Hash("subject", v),
		"another purpose": r1.Hash("message-id", v),
		"another value":   r1.Hash("subject", []byte("15550101011")),
	} {
		if bytes.Equal(h, x) {
			t.Errorf("%s hashes alike", what)
		}
	}
}

func TestParseRefusesMalformedRings(t *testing.T) {
	t.Parallel()
	_, good := newRing(t)
	for name, change := range map[string]func(map[string][]byte){
		"active names a missing version": func(d map[string][]byte) { d[datakey.ActiveKey] = []byte("2") },
		"active not a number":            func(d map[string][]byte) { d[datakey.ActiveKey] = []byte("one") },
		"active with leading zero":       func(d map[string][]byte) { d[datakey.ActiveKey] = []byte("01") },
		"no active":                      func(d map[string][]byte) { delete(d, datakey.ActiveKey) },
		"short key":                      func(d map[string][]byte) { d["key-1"] = d["key-1"][:16] },
		"key version zero":               func(d map[string][]byte) { d["key-0"] = d["key-1"] },
		"no index key":                   func(d map[string][]byte) { delete(d, datakey.IndexKey) },
		"short index key":                func(d map[string][]byte) { d[datakey.IndexKey] = d[datakey.IndexKey][:31] },
	} {
		d := maps.Clone(good)
		change(d)
		if _, err := datakey.Parse(d, nil); err == nil {
			t.Errorf("%s: parsed", name)
		} else if strings.Contains(err.Error(), string(good["key-1"])) {
			t.Errorf("%s: the error holds key bytes", name)
		}
	}
}

// A ring whose keys are wrapped (a KMS) opens only through the Wrapper.
func TestWrappedKeysNeedTheirUnwrap(t *testing.T) {
	t.Parallel()
	kek := bytes.Repeat([]byte{0x5a}, datakey.KeySize)
	xor := func(b []byte) ([]byte, error) {
		out := make([]byte, len(b))
		for i := range b {
			out[i] = b[i] ^ kek[i%len(kek)]
		}
		return out, nil
	}
	data, err := datakey.NewSecretData(rand.Reader, xor)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := datakey.Parse(data, xor)
	if err != nil {
		t.Fatal(err)
	}
	id := datakey.Identity("messages", "m")
	sealed, err := wrapped.Seal([]byte("x"), id)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := datakey.Parse(data, nil) // the Secret alone, without the KMS
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Open(sealed, id); !errors.Is(err, datakey.ErrAuthentication) {
		t.Fatalf("the wrapped Secret alone opened a record: %v", err)
	}
}

// BenchmarkSealOpen200 is the cost per record of a 200-byte message: compare with the
// ~100 µs of a durable commit (docs/encryption.md).
func BenchmarkSealOpen200(b *testing.B) {
	r, _ := newRing(b)
	msg := bytes.Repeat([]byte("a"), 200)
	id := datakey.Identity("messages", "wamid.HBgLMTU1NTAxMDEwMTAVAgASGBQzQTk")
	b.Run("Seal", func(b *testing.B) {
		b.SetBytes(200)
		for b.Loop() {
			if _, err := r.Seal(msg, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	sealed, err := r.Seal(msg, id)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Open", func(b *testing.B) {
		b.SetBytes(200)
		for b.Loop() {
			if _, err := r.Open(sealed, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Hash", func(b *testing.B) {
		for b.Loop() {
			r.Hash("message-id", id)
		}
	})
}
