package meta

import (
	"bufio"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fixtureAppSecret = "test_app_secret_0123456789abcdef"

// fixtureSignedRequests reads the valid and tampered vectors of the shared fixture
// (data-deletion-signed-request.txt): the line after each heading.
func fixtureSignedRequests(t testing.TB) (valid, tampered string) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "fixtures", "data-deletion-signed-request.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var next *string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := strings.TrimSpace(sc.Text())
		switch {
		case next != nil && line != "":
			*next, next = line, nil
		case strings.HasPrefix(line, "signed_request (valid):"):
			next = &valid
		case strings.HasPrefix(line, "signed_request (tampered signature"):
			next = &tampered
		}
	}
	if valid == "" || tampered == "" {
		t.Fatal("the fixture lost its vectors")
	}
	return valid, tampered
}

func TestParseSignedRequestFixture(t *testing.T) {
	valid, tampered := fixtureSignedRequests(t)
	got, err := ParseSignedRequest([]byte(fixtureAppSecret), valid)
	if err != nil {
		t.Fatalf("valid vector rejected: %v", err)
	}
	want := SignedRequest{UserID: "10160012345678901", IssuedAt: 1781100000, Expires: 1781107200}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := ParseSignedRequest([]byte(fixtureAppSecret), tampered); !errors.Is(err, ErrSignedRequestSignature) {
		t.Fatalf("tampered vector: got %v, want a signature mismatch", err)
	}
	// The same payload, signed by our own signer, is the fixture byte for byte.
	payload := `{"algorithm":"HMAC-SHA256","expires":1781107200,"issued_at":1781100000,"user_id":"10160012345678901"}`
	if s := SignSignedRequest([]byte(fixtureAppSecret), []byte(payload)); s != valid {
		t.Fatalf("SignSignedRequest = %s, want the fixture %s", s, valid)
	}
}

func TestParseSignedRequestRejects(t *testing.T) {
	secret := []byte(fixtureAppSecret)
	valid, _ := fixtureSignedRequests(t)
	sigPart, payloadPart, _ := strings.Cut(valid, ".")
	edited := base64.RawURLEncoding.EncodeToString([]byte(`{"algorithm":"HMAC-SHA256","user_id":"10160012345678902"}`))
	sign := func(payload string) string { return SignSignedRequest(secret, []byte(payload)) }
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"other secret", SignSignedRequest([]byte("another secret"), []byte(`{"algorithm":"HMAC-SHA256","user_id":"1"}`)), ErrSignedRequestSignature},
		{"payload edited after signing", sigPart + "." + edited, ErrSignedRequestSignature},
		{"algorithm HMAC-SHA1", sign(`{"algorithm":"HMAC-SHA1","user_id":"1"}`), ErrSignedRequestAlgorithm},
		{"algorithm missing", sign(`{"user_id":"1"}`), ErrSignedRequestAlgorithm},
		{"algorithm not a string", sign(`{"algorithm":1,"user_id":"1"}`), ErrSignedRequestMalformed},
		{"user missing", sign(`{"algorithm":"HMAC-SHA256"}`), ErrSignedRequestNoUser},
		{"user empty", sign(`{"algorithm":"HMAC-SHA256","user_id":""}`), ErrSignedRequestNoUser},
		{"user null", sign(`{"algorithm":"HMAC-SHA256","user_id":null}`), ErrSignedRequestNoUser},
		{"user not numeric", sign(`{"algorithm":"HMAC-SHA256","user_id":"../etc"}`), ErrSignedRequestMalformed},
		{"user a float", sign(`{"algorithm":"HMAC-SHA256","user_id":1.5e3}`), ErrSignedRequestMalformed},
		{"issued_at not a number", sign(`{"algorithm":"HMAC-SHA256","user_id":"1","issued_at":"soon"}`), ErrSignedRequestMalformed},
		{"payload not JSON", sign(`not json`), ErrSignedRequestMalformed},
		{"payload a JSON array", sign(`["HMAC-SHA256"]`), ErrSignedRequestMalformed},
		{"empty", "", ErrSignedRequestMalformed},
		{"no dot", sigPart + payloadPart, ErrSignedRequestMalformed},
		{"empty signature", "." + payloadPart, ErrSignedRequestMalformed},
		{"empty payload", sigPart + ".", ErrSignedRequestMalformed},
		{"three parts", valid + ".x", ErrSignedRequestSignature},
		{"signature not base64url", "!!!." + payloadPart, ErrSignedRequestMalformed},
		{"standard base64 signature", strings.NewReplacer("-", "+", "_", "/").Replace(sigPart) + "." + payloadPart, ErrSignedRequestMalformed},
		{"payload not base64url", sign("not base64") + "", ErrSignedRequestMalformed},
		{"huge", strings.Repeat("A", maxSignedRequest+1), ErrSignedRequestMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			if tc.name == "payload not base64url" {
				// A correctly signed payload part that is not base64url.
				m := signedRequestMAC(secret, "a*b")
				in = base64.RawURLEncoding.EncodeToString(m) + ".a*b"
			}
			got, err := ParseSignedRequest(secret, in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %+v, %v; want %v", got, err, tc.want)
			}
			if strings.Contains(err.Error(), "10160012345678901") {
				t.Fatalf("error %q carries the user id", err)
			}
		})
	}
	if _, err := ParseSignedRequest(nil, valid); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("empty secret: got %v, want ErrNoSecret", err)
	}
}

func TestParseSignedRequestTolerates(t *testing.T) {
	secret := []byte(fixtureAppSecret)
	valid, _ := fixtureSignedRequests(t)
	sigPart, payloadPart, _ := strings.Cut(valid, ".")
	for _, tc := range []struct{ name, in, user string }{
		{"padded signature", sigPart + "=." + payloadPart, "10160012345678901"},
		{"padding appended to the payload", sigPart + "." + payloadPart + "==", "10160012345678901"},
		{"lowercase algorithm", SignSignedRequest(secret, []byte(`{"algorithm":"hmac-sha256","user_id":"42"}`)), "42"},
		{"numeric user id beyond 2^53", SignSignedRequest(secret, []byte(`{"algorithm":"HMAC-SHA256","user_id":10160012345678901234}`)), "10160012345678901234"},
		{"unknown keys, no dates", SignSignedRequest(secret, []byte(`{"user_id":"7","algorithm":"HMAC-SHA256","oauth_token":"x"}`)), "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSignedRequest(secret, tc.in)
			if err != nil || got.UserID != tc.user {
				t.Fatalf("got %+v, %v; want user %s", got, err, tc.user)
			}
		})
	}
}

// FuzzParseSignedRequest: no input panics, and whatever is accepted was signed with the
// secret (re-signing its payload part reproduces its signature) and names a numeric user.
func FuzzParseSignedRequest(f *testing.F) {
	valid, tampered := fixtureSignedRequests(f)
	f.Add(valid)
	f.Add(tampered)
	f.Add("")
	f.Add(".")
	f.Add("a.b.c")
	f.Add(SignSignedRequest([]byte(fixtureAppSecret), []byte(`{"algorithm":"hmac-sha256","user_id":1}`)))
	f.Fuzz(func(t *testing.T, in string) {
		secret := []byte(fixtureAppSecret)
		got, err := ParseSignedRequest(secret, in)
		if err != nil {
			if got != (SignedRequest{}) {
				t.Fatalf("rejected input returned %+v", got)
			}
			return
		}
		if got.UserID == "" || strings.Trim(got.UserID, "0123456789") != "" {
			t.Fatalf("accepted a non-numeric user id %q", got.UserID)
		}
		sigPart, payloadPart, _ := strings.Cut(in, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(strings.TrimRight(sigPart, "="))
		if string(sig) != string(signedRequestMAC(secret, payloadPart)) &&
			string(sig) != string(signedRequestMAC(secret, strings.TrimRight(payloadPart, "="))) {
			t.Fatalf("accepted %q without a valid signature", in)
		}
	})
}
