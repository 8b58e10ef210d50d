package meta

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
	"sync"
	"unicode/utf8"
)

// SignatureHeader is the header Meta signs every webhook POST with.
const SignatureHeader = "X-Hub-Signature-256"

// Errors returned by VerifySignature. They never carry the header value or the body,
// so that they are safe to log.
var (
	ErrSignatureMissing   = errors.New("signature header missing")
	ErrSignatureMalformed = errors.New("signature header malformed")
	ErrSignatureMismatch  = errors.New("signature does not match")
	ErrNoSecret           = errors.New("no app secret configured")
)

// Sign returns the X-Hub-Signature-256 value Meta would send for body.
// Used by tests, the load generator and a future front door that re-signs forwarded changes.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature checks header against HMAC-SHA256(secret, body) in constant time.
//
// It verifies the raw bytes first. Only if that fails and the body holds non-ASCII bytes
// does it retry over the "escaped unicode" form Meta documents as the signed form
// (meta-webhooks.md §2.4); fallback reports whether that second form matched, so the
// caller can count how often it happens. It fails closed: an empty secret never verifies.
func VerifySignature(secret, body []byte, header string) (fallback bool, err error) {
	return verifySignature(secret, body, header, func(b []byte, sum *[sha256.Size]byte) []byte {
		mac := hmac.New(sha256.New, secret)
		mac.Write(b)
		return mac.Sum(sum[:0])
	})
}

// verifySignature is VerifySignature with mac computing HMAC-SHA256(secret, b) into sum.
func verifySignature(secret, body []byte, header string, mac func(b []byte, sum *[sha256.Size]byte) []byte) (bool, error) {
	if len(secret) == 0 {
		return false, ErrNoSecret
	}
	if header == "" {
		return false, ErrSignatureMissing
	}
	var want, sum [sha256.Size]byte
	if err := decodeSignatureHeader(header, &want); err != nil {
		return false, err
	}
	if hmac.Equal(mac(body, &sum), want[:]) {
		return false, nil
	}
	if hasNonASCII(body) {
		if hmac.Equal(mac(EscapeNonASCII(body), &sum), want[:]) {
			return true, nil
		}
	}
	return false, ErrSignatureMismatch
}

// Verifier is VerifySignature for one app secret, reusing keyed HMAC states: a delivery
// then costs the hash of its body, not also the key's schedule and the state's
// allocations (the front door checks every delivery with one secret).
type Verifier struct {
	secret []byte
	pool   sync.Pool
}

// NewVerifier returns a Verifier of secret (copied).
func NewVerifier(secret []byte) *Verifier {
	v := &Verifier{secret: bytes.Clone(secret)}
	v.pool.New = func() any { return hmac.New(sha256.New, v.secret) }
	return v
}

// Verify returns what VerifySignature(secret, body, header) returns.
func (v *Verifier) Verify(body []byte, header string) (fallback bool, err error) {
	return verifySignature(v.secret, body, header, func(b []byte, sum *[sha256.Size]byte) []byte {
		mac := v.pool.Get().(hash.Hash)
		mac.Reset()
		mac.Write(b)
		out := mac.Sum(sum[:0])
		v.pool.Put(mac)
		return out
	})
}

// VerifyToken compares the handshake's hub.verify_token with the configured token in
// constant time. An empty configured token never matches (fail closed).
func VerifyToken(configured, got string) bool {
	if configured == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(configured), []byte(got)) == 1
}

// decodeSignatureHeader accepts "sha256=" followed by exactly 64 hex digits into sum.
// Uppercase hex is accepted defensively; anything else is malformed.
func decodeSignatureHeader(h string, sum *[sha256.Size]byte) error {
	const prefix = "sha256="
	if len(h) != len(prefix)+2*sha256.Size || !strings.EqualFold(h[:len(prefix)], prefix) {
		return ErrSignatureMalformed
	}
	for i := range sum {
		hi, ok1 := unhex(h[len(prefix)+2*i])
		lo, ok2 := unhex(h[len(prefix)+2*i+1])
		if !ok1 || !ok2 {
			return ErrSignatureMalformed
		}
		sum[i] = hi<<4 | lo
	}
	return nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func hasNonASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// EscapeNonASCII returns body with every non-ASCII rune replaced by lowercase \uXXXX
// escapes (UTF-16 code units, so astral runes become surrogate pairs) and every ASCII
// byte left untouched: the form Meta says it signs. Invalid UTF-8 bytes become \ufffd,
// which can never match a real signature but must not panic.
func EscapeNonASCII(body []byte) []byte {
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 0, len(body)+len(body)/4)
	esc := func(u uint16) {
		out = append(out, '\\', 'u', hexdigits[u>>12&0xf], hexdigits[u>>8&0xf], hexdigits[u>>4&0xf], hexdigits[u&0xf])
	}
	for i := 0; i < len(body); {
		c := body[i]
		if c < utf8.RuneSelf {
			out = append(out, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(body[i:])
		i += size
		if r > 0xffff {
			r -= 0x10000
			esc(uint16(0xd800 + (r>>10)&0x3ff))
			esc(uint16(0xdc00 + r&0x3ff))
			continue
		}
		esc(uint16(r))
	}
	return out
}
