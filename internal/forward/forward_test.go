package forward

import (
	"bytes"
	"testing"
)

func TestSignVerify(t *testing.T) {
	master := bytes.Repeat([]byte{7}, MinKeyBytes)
	ka, kb := TenantKey(master, "acme"), TenantKey(master, "globex")
	if bytes.Equal(ka, kb) {
		t.Fatal("two tenants share a key")
	}
	body := []byte(`{"object":"page","entry":[]}`)
	sig := Sign(ka, "acme", body)
	if err := Verify(ka, "acme", body, sig); err != nil {
		t.Fatalf("genuine: %v", err)
	}
	for name, tc := range map[string]struct {
		key    []byte
		tenant string
		body   []byte
		header string
	}{
		"other tenant's worker": {kb, "globex", body, sig},
		"tenant name swapped":   {ka, "globex", body, sig},
		"tampered body":         {ka, "acme", []byte(`{"object":"page","entry":[{}]}`), sig},
		"no header":             {ka, "acme", body, ""},
		"truncated":             {ka, "acme", body, sig[:len(sig)-2]},
		"no key":                {nil, "acme", body, Sign(nil, "acme", body)},
		"signed by the master":  {ka, "acme", body, Sign(master, "acme", body)},
	} {
		if err := Verify(tc.key, tc.tenant, tc.body, tc.header); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A signature made for one purpose verifies for no other: a captured forward is not a
// deletion filing, a status query is not a forward, and acme's credential is not globex's.
func TestSignForSeparatesPurposes(t *testing.T) {
	master := bytes.Repeat([]byte{7}, MinKeyBytes)
	ka := TenantKey(master, "acme")
	body := []byte(`{"code":"abc"}`)
	sig := SignFor(ka, "acme", PurposeDeletion, body)
	if err := VerifyFor(ka, "acme", PurposeDeletion, body, sig); err != nil {
		t.Fatalf("genuine: %v", err)
	}
	if Verify(ka, "acme", body, sig) == nil {
		t.Error("a deletion filing verified as a forward")
	}
	if VerifyFor(ka, "acme", PurposeDeletion, body, Sign(ka, "acme", body)) == nil {
		t.Error("a forward verified as a deletion filing")
	}
	if VerifyFor(ka, "acme", PurposeDeletionStatus, body, sig) == nil {
		t.Error("a deletion filing verified as a status query")
	}
	if VerifyFor(TenantKey(master, "globex"), "globex", PurposeDeletion, body, sig) == nil {
		t.Error("acme's filing verified at globex")
	}
}

// The code is the same for Meta's retry of a request, another for another request, app
// or key, and holds nothing of the user id.
func TestDeletionCode(t *testing.T) {
	k := bytes.Repeat([]byte{7}, MinKeyBytes)
	c := DeletionCode(k, "shared", "10160012345678901", 1781100000)
	if c != DeletionCode(k, "shared", "10160012345678901", 1781100000) {
		t.Fatal("a retry gets another code")
	}
	for name, other := range map[string]string{
		"later request": DeletionCode(k, "shared", "10160012345678901", 1781100001),
		"other user":    DeletionCode(k, "shared", "10160012345678902", 1781100000),
		"other app":     DeletionCode(k, "other", "10160012345678901", 1781100000),
		"other key":     DeletionCode(bytes.Repeat([]byte{8}, MinKeyBytes), "shared", "10160012345678901", 1781100000),
	} {
		if other == c {
			t.Errorf("%s: same code", name)
		}
	}
	if len(c) != 24 || bytes.Contains([]byte(c), []byte("1016001")) {
		t.Errorf("code %q", c)
	}
}

// A nothing-held code is recognised by the key that made it, for its app only; a
// filed request's code, another app's, another key's or an edited one is not one.
func TestNothingHeldCode(t *testing.T) {
	k := bytes.Repeat([]byte{7}, MinKeyBytes)
	c := NothingHeldCode(k, "shared", "10160012345678901", 1781100000)
	if c != NothingHeldCode(k, "shared", "10160012345678901", 1781100000) {
		t.Fatal("a retry gets another code")
	}
	if len(c) != 24 || bytes.Contains([]byte(c), []byte("1016001")) {
		t.Errorf("code %q", c)
	}
	edited := []byte(c)
	edited[23] ^= 1
	for name, tc := range map[string]struct {
		app, code string
		key       []byte
		want      bool
	}{
		"its own":      {"shared", c, k, true},
		"another":      {"shared", NothingHeldCode(k, "shared", "10160012345678901", 1781100001), k, true},
		"a filed code": {"shared", DeletionCode(k, "shared", "10160012345678901", 1781100000), k, false},
		"other app":    {"other", c, k, false},
		"no app":       {"", NothingHeldCode(k, "", "1", 1), k, false},
		"other key":    {"shared", c, bytes.Repeat([]byte{8}, MinKeyBytes), false},
		"edited":       {"shared", string(edited), k, false},
		"short":        {"shared", c[:23], k, false},
		"made up":      {"shared", "0123456789abcdef01234567", k, false},
	} {
		if got := IsNothingHeldCode(tc.key, tc.app, tc.code); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}

func TestSignerSignsAsSign(t *testing.T) {
	k := TenantKey(bytes.Repeat([]byte{7}, MinKeyBytes), "acme")
	s := NewSigner(k, "acme")
	for _, body := range [][]byte{nil, []byte(`{"object":"page"}`), bytes.Repeat([]byte("x"), 5000)} {
		for range 2 { // a pooled state signs again as a fresh one
			if got, want := s.Sign(body), Sign(k, "acme", body); got != want {
				t.Fatalf("%q: %s, want %s", body, got, want)
			}
		}
	}
}
