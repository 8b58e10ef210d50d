package meta

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const testSecret = "test_app_secret_0123456789abcdef"

// readmeVectors reads the signature table of the fixtures README: file -> sha256 header.
func readmeVectors(t testing.TB) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "fixtures", "README.md"))
	if err != nil {
		t.Fatalf("open README: %v", err)
	}
	defer f.Close()
	re := regexp.MustCompile("^\\| `([^`]+\\.json)` \\| \\d+ \\| `(sha256=[0-9a-f]{64})`")
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = m[2]
		}
	}
	if len(out) < 30 {
		t.Fatalf("only %d signature vectors found in README", len(out))
	}
	return out
}

func TestVerifySignatureVectors(t *testing.T) {
	t.Parallel()
	for file, header := range readmeVectors(t) {
		body := readFixture(t, file)
		if fb, err := VerifySignature([]byte(testSecret), body, header); err != nil || fb {
			t.Errorf("%s: VerifySignature = fallback %v, %v; want raw match", file, fb, err)
		}
		if got := Sign([]byte(testSecret), body); got != header {
			t.Errorf("%s: Sign = %s, want %s", file, got, header)
		}
		if _, err := VerifySignature([]byte("other_secret"), body, header); !errors.Is(err, ErrSignatureMismatch) {
			t.Errorf("%s: wrong secret gave %v", file, err)
		}
		tampered := bytes.Replace(body, []byte("1"), []byte("2"), 1)
		if _, err := VerifySignature([]byte(testSecret), tampered, header); !errors.Is(err, ErrSignatureMismatch) {
			t.Errorf("%s: tampered body gave %v", file, err)
		}
	}
}

func TestVerifySignatureCases(t *testing.T) {
	t.Parallel()
	body := readFixture(t, "whatsapp-text.json")
	good := Sign([]byte(testSecret), body)
	cases := []struct {
		name   string
		secret string
		header string
		want   error
	}{
		{"valid", testSecret, good, nil},
		{"uppercase hex accepted", testSecret, "sha256=" + strings.ToUpper(good[7:]), nil},
		{"missing", testSecret, "", ErrSignatureMissing},
		{"sha1 scheme", testSecret, "sha1=2fe9d106718e753ecd2ff264ada1fa7451eee4d5", ErrSignatureMalformed},
		{"no prefix", testSecret, good[7:], ErrSignatureMalformed},
		{"short", testSecret, good[:70], ErrSignatureMalformed},
		{"not hex", testSecret, "sha256=" + strings.Repeat("zz", 32), ErrSignatureMalformed},
		{"trailing space", testSecret, good + " ", ErrSignatureMalformed},
		{"one digit off", testSecret, good[:70] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", good[70])+1)%16]), ErrSignatureMismatch},
		{"empty secret fails closed", "", good, ErrNoSecret},
		{"verify token is not the secret", "tenant-a-verify-7f3c", good, ErrSignatureMismatch},
	}
	for _, tc := range cases {
		_, err := VerifySignature([]byte(tc.secret), body, tc.header)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

// A body that reached us as raw UTF-8 (a proxy decoded Meta's escapes) but was signed in
// its escaped form verifies through the fallback, and reports that it did.
func TestVerifySignatureEscapedFallback(t *testing.T) {
	t.Parallel()
	wire := readFixture(t, "whatsapp-text-unicode-wire-compact.json")
	var v any
	if err := json.Unmarshal(wire, &v); err != nil {
		t.Fatal(err)
	}
	// Build the raw-UTF-8 copy by hand: unescape \uXXXX only, keep \/ as on the wire.
	raw := []byte(strings.NewReplacer(`\u00e9`, "é", `\u00fc`, "ü", `\u00e1`, "á", `\u00e7`, "ç", `\ud83d\udc4d`, "👍").Replace(string(wire)))
	if bytes.Equal(raw, wire) || !bytes.Equal(EscapeNonASCII(raw), wire) {
		t.Fatalf("EscapeNonASCII(raw copy) does not give back the wire bytes:\n%s", EscapeNonASCII(raw))
	}
	header := Sign([]byte(testSecret), wire)
	fb, err := VerifySignature([]byte(testSecret), raw, header)
	if err != nil || !fb {
		t.Fatalf("fallback: got fallback=%v err=%v", fb, err)
	}
	// Signed over the raw UTF-8 bytes themselves: plain match, no fallback.
	if fb, err := VerifySignature([]byte(testSecret), raw, Sign([]byte(testSecret), raw)); err != nil || fb {
		t.Fatalf("raw utf-8 signed raw: fallback=%v err=%v", fb, err)
	}
}

func TestVerifyToken(t *testing.T) {
	t.Parallel()
	if !VerifyToken("tenant-a-verify-7f3c", "tenant-a-verify-7f3c") {
		t.Error("right token refused")
	}
	for _, got := range []string{"wrong", "", "tenant-a-verify-7f3", "tenant-a-verify-7f3cc"} {
		if VerifyToken("tenant-a-verify-7f3c", got) {
			t.Errorf("token %q accepted", got)
		}
	}
	if VerifyToken("", "") {
		t.Error("empty configured token accepted")
	}
}

// A Verifier answers as VerifySignature does, for every header and body, on every reuse
// of its pooled states.
func TestVerifierMatchesVerifySignature(t *testing.T) {
	secret := []byte(testSecret)
	v := NewVerifier(secret)
	bodies := [][]byte{[]byte(`{"object":"page"}`), []byte("caf\xc3\xa9 \xf0\x9f\x98\x80"), []byte("\xff"), {}}
	for _, body := range bodies {
		sig := Sign(secret, body)
		for _, header := range []string{sig, strings.ToUpper(sig[:7]) + strings.ToUpper(sig[7:]), Sign(secret, EscapeNonASCII(body)),
			Sign([]byte("other"), body), "", "sha256=", sig[:len(sig)-1] + "g", "sha1=" + sig[7:], sig + "0"} {
			for range 2 {
				wf, werr := VerifySignature(secret, body, header)
				gf, gerr := v.Verify(body, header)
				if wf != gf || !errors.Is(gerr, werr) {
					t.Errorf("%q %q: Verify %v %v, VerifySignature %v %v", body, header, gf, gerr, wf, werr)
				}
			}
		}
	}
	if _, err := NewVerifier(nil).Verify([]byte("{}"), Sign(nil, []byte("{}"))); !errors.Is(err, ErrNoSecret) {
		t.Errorf("empty secret: %v", err)
	}
}
