// Package forward is the internal protocol between the webhook front door and the
// tenants' workers: the front door, having checked Meta's signature with the app secret,
// sends each tenant's parts of a delivery to that tenant's worker in one request, and the
// worker accepts it only with the credential made for it.
//
// The credential is a per-tenant HMAC key derived from the front door's forwarding key:
// TenantKey(forwardingKey, tenant). A worker holds only its own tenant's key, so a
// compromised worker can forge nothing for another tenant, and a request captured on its
// way to one worker is refused by every other. The signature covers the tenant's name
// and the body; a replay of a genuine request to the same worker only repeats a delivery
// Meta could repeat too, which the worker absorbs as a duplicate.
package forward

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"
	"sync"
)

// Path is the worker's endpoint for forwarded parts.
const Path = "/internal/forward"

// SignatureHeader carries "sha256=<hex>" of Sign.
const SignatureHeader = "X-Omniflow-Forward-Signature"

// MinKeyBytes is the shortest forwarding key accepted: 32 bytes (256 bits).
const MinKeyBytes = 32

// TenantKey is the key the worker of tenant holds: HMAC-SHA256(forwardingKey, tenant).
func TenantKey(forwardingKey []byte, tenant string) []byte {
	m := hmac.New(sha256.New, forwardingKey)
	m.Write([]byte("omniflow-forward-tenant\x00" + tenant))
	return m.Sum(nil)
}

// Sign returns the header value for body forwarded to tenant's worker, made with that
// tenant's key.
func Sign(tenantKey []byte, tenant string, body []byte) string {
	m := hmac.New(sha256.New, tenantKey)
	m.Write([]byte(tenant))
	m.Write([]byte{0})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// ErrSignature means a forwarded request does not carry a valid signature.
var ErrSignature = errors.New("forward signature missing or invalid")

// Verify checks header against body for tenant, in constant time. An empty key never
// verifies: a worker without a forwarding credential accepts no forwarded parts.
func Verify(tenantKey []byte, tenant string, body []byte, header string) error {
	if len(tenantKey) == 0 || !strings.HasPrefix(header, "sha256=") || len(header) != len("sha256=")+64 {
		return ErrSignature
	}
	if !hmac.Equal([]byte(Sign(tenantKey, tenant, body)), []byte(strings.ToLower(header))) {
		return ErrSignature
	}
	return nil
}

// ReadKeyFile reads a key written in hex (surrounding whitespace ignored), as mounted
// from a Secret: at least MinKeyBytes long.
func ReadKeyFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("key file %s: want hex: %w", path, err)
	}
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("key file %s: %d bytes, want at least %d", path, len(key), MinKeyBytes)
	}
	return key, nil
}

// Signer makes Sign's header for one tenant, reusing keyed HMAC states: a forward then
// costs the hash of its body, not also the key schedule and two allocations.
type Signer struct {
	tenant string
	pool   sync.Pool
}

// NewSigner returns a Signer for tenant with its key.
func NewSigner(tenantKey []byte, tenant string) *Signer {
	key := bytes.Clone(tenantKey)
	s := &Signer{tenant: tenant}
	s.pool.New = func() any { return hmac.New(sha256.New, key) }
	return s
}

// Sign returns what Sign(tenantKey, tenant, body) returns.
func (s *Signer) Sign(body []byte) string {
	m := s.pool.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(s.tenant))
	m.Write([]byte{0})
	m.Write(body)
	var sum [sha256.Size]byte
	out := make([]byte, len("sha256=")+2*sha256.Size)
	copy(out, "sha256=")
	hex.Encode(out[len("sha256="):], m.Sum(sum[:0]))
	s.pool.Put(m)
	return string(out)
}
