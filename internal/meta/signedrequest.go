package meta

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// SignedRequestField is the form field Meta's data-deletion callback posts
// (meta-webhooks.md §6.1).
const SignedRequestField = "signed_request"

// SignedRequestAlgorithm is the only algorithm Meta signs requests with.
const SignedRequestAlgorithm = "HMAC-SHA256"

// maxSignedRequest bounds what is decoded and hashed: real signed requests are a few
// hundred bytes, so anything far larger is not from Meta.
const maxSignedRequest = 8 << 10

// Errors returned by ParseSignedRequest. Like the webhook signature errors they never
// carry any part of the input, so that they are safe to log.
var (
	ErrSignedRequestMalformed = errors.New("signed request malformed")
	ErrSignedRequestSignature = errors.New("signed request signature does not match")
	ErrSignedRequestAlgorithm = errors.New("signed request algorithm is not HMAC-SHA256")
	ErrSignedRequestNoUser    = errors.New("signed request names no user")
)

// SignedRequest is the verified payload of a signed_request.
type SignedRequest struct {
	// UserID is the app-scoped id of a Facebook Login user of the app. It is kept as a
	// string: ids exceed 2^53 and must never go through a float.
	UserID string
	// IssuedAt and Expires are unix seconds; 0 when absent (Meta does not document
	// that deletion callbacks carry them).
	IssuedAt int64
	Expires  int64
}

// SignSignedRequest builds the signed_request Meta would send for payload (compact JSON
// bytes). For tests and local tooling.
func SignSignedRequest(secret, payload []byte) string {
	p := base64.RawURLEncoding.EncodeToString(payload)
	return base64.RawURLEncoding.EncodeToString(signedRequestMAC(secret, p)) + "." + p
}

// signedRequestMAC is the raw HMAC-SHA256 of the encoded payload string (not of the
// decoded JSON).
func signedRequestMAC(secret []byte, payload string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// ParseSignedRequest verifies a signed_request ("<base64url sig>.<base64url payload>")
// with the app secret and returns its payload. The HMAC is checked, in constant time,
// over the encoded payload exactly as received, before the payload is decoded, so that
// nothing unauthenticated reaches the JSON decoder. It fails closed: an empty secret
// never verifies.
func ParseSignedRequest(secret []byte, signed string) (SignedRequest, error) {
	if len(secret) == 0 {
		return SignedRequest{}, ErrNoSecret
	}
	if len(signed) > maxSignedRequest {
		return SignedRequest{}, fmt.Errorf("%w: %d bytes", ErrSignedRequestMalformed, len(signed))
	}
	// Split on the first '.': the base64url alphabet has no '.', so a second one makes the
	// payload undecodable and it is rejected below.
	sigPart, payloadPart, ok := strings.Cut(signed, ".")
	if !ok || sigPart == "" || payloadPart == "" {
		return SignedRequest{}, fmt.Errorf("%w: want <signature>.<payload>", ErrSignedRequestMalformed)
	}
	sig, err := decodeSegment(sigPart)
	if err != nil {
		return SignedRequest{}, fmt.Errorf("%w: signature is not base64url", ErrSignedRequestMalformed)
	}
	// The MAC covers the payload as sent. Meta strips padding before signing; a payload
	// that arrives padded (a proxy or client library that re-pads) is also checked
	// without it, so that padding alone never decides.
	ok = hmac.Equal(sig, signedRequestMAC(secret, payloadPart))
	if stripped := strings.TrimRight(payloadPart, "="); !ok && stripped != payloadPart {
		ok = hmac.Equal(sig, signedRequestMAC(secret, stripped))
	}
	if !ok {
		return SignedRequest{}, ErrSignedRequestSignature
	}
	raw, err := decodeSegment(payloadPart)
	if err != nil {
		return SignedRequest{}, fmt.Errorf("%w: payload is not base64url", ErrSignedRequestMalformed)
	}
	var p struct {
		Algorithm string          `json:"algorithm"`
		UserID    json.RawMessage `json:"user_id"`
		IssuedAt  json.Number     `json:"issued_at"`
		Expires   json.Number     `json:"expires"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return SignedRequest{}, fmt.Errorf("%w: payload is not a JSON object", ErrSignedRequestMalformed)
	}
	// Case-insensitive, as Meta's own PHP sample compares it.
	if !strings.EqualFold(p.Algorithm, SignedRequestAlgorithm) {
		return SignedRequest{}, ErrSignedRequestAlgorithm
	}
	user, err := userID(p.UserID)
	if err != nil {
		return SignedRequest{}, err
	}
	out := SignedRequest{UserID: user}
	if out.IssuedAt, err = optionalSeconds(p.IssuedAt); err != nil {
		return SignedRequest{}, fmt.Errorf("%w: issued_at", ErrSignedRequestMalformed)
	}
	if out.Expires, err = optionalSeconds(p.Expires); err != nil {
		return SignedRequest{}, fmt.Errorf("%w: expires", ErrSignedRequestMalformed)
	}
	return out, nil
}

// decodeSegment decodes base64url with or without padding (Meta strips it; some
// senders keep it).
func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// userID accepts the id as a JSON string (what Meta sends) or an integer, keeping its
// digits verbatim either way. An id is digits only: anything else is not one, and it
// must be safe to put in a Secret and compare with stored ids.
func userID(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", ErrSignedRequestNoUser
	}
	id := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &id); err != nil {
			return "", fmt.Errorf("%w: user_id", ErrSignedRequestMalformed)
		}
	}
	if id == "" {
		return "", ErrSignedRequestNoUser
	}
	if len(id) > 64 || strings.Trim(id, "0123456789") != "" {
		return "", fmt.Errorf("%w: user_id is not a numeric id", ErrSignedRequestMalformed)
	}
	return id, nil
}

func optionalSeconds(n json.Number) (int64, error) {
	if n == "" {
		return 0, nil
	}
	return n.Int64()
}
