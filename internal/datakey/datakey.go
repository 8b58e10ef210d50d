// Package datakey is a tenant's data key ring and the record cipher built on it: what
// puts every copy of a tenant's store beyond use once the key is destroyed
// (crypto-shredding, docs/encryption.md).
//
// A ring holds versioned 256-bit keys, one of them active, and one index key:
//
//   - Seal encrypts a record under the active version with AES-256-GCM, a random 96-bit
//     nonce per record, and the record's identity (table and primary key, see Identity)
//     as associated data: a ciphertext copied into another record fails to open. The
//     output starts with a format byte and the key version, so that records sealed
//     before a rotation stay readable and a rotation can find them (VersionOf).
//   - Hash is the keyed hash of a searchable identifier (a message id, a subject's id):
//     HMAC-SHA-256 under a subkey derived with HKDF from the index key, one subkey per
//     purpose. The index key never rotates, so hashes stay equal across key versions
//     (dedupe and subject lookup keep working); it is destroyed with the ring.
//
// The package is pure: the ring is parsed from and written to a Secret's data
// (SecretData, Parse), and where it comes from is a Source (source.go).
package datakey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// KeySize is the size of every key in a ring: 256 bits.
const KeySize = 32

// Keys of the Secret's data that holds a ring. Each key version is KeyPrefix followed
// by its number in decimal (key-1, key-2, ...), 32 bytes each; ActiveKey is the number
// of the version Seal uses; IndexKey is the non-rotating key of the keyed hashes.
const (
	KeyPrefix = "key-"
	ActiveKey = "active"
	IndexKey  = "index-key"
)

// Version numbers a key of a ring, from 1.
type Version uint32

// formatV1 is the first byte of every sealed record: AES-256-GCM, 4-byte big-endian
// key version, 12-byte nonce, ciphertext and 16-byte tag.
const formatV1 byte = 1

const (
	nonceSize  = 12
	headerSize = 1 + 4
	// Overhead is how many bytes Seal adds to a record.
	Overhead = headerSize + nonceSize + 16
)

// Errors of Open. None of them says anything about the plaintext.
var (
	// ErrAuthentication: the record was tampered with, moved to another record
	// (another identity), or sealed under another key of the same version number.
	ErrAuthentication = errors.New("datakey: record does not authenticate (tampered, moved to another record, or another key)")
	// ErrUnknownVersion: the record was sealed under a key version the ring does not
	// hold (destroyed, or from another tenant's ring).
	ErrUnknownVersion = errors.New("datakey: record sealed under a key version this ring does not hold")
	// ErrFormat: the bytes are not a sealed record of a known format.
	ErrFormat = errors.New("datakey: not a sealed record")
)

// HKDF labels: each key serves one purpose only.
const (
	recordLabel = "omniflow datakey record v1"
	hashLabel   = "omniflow datakey keyed-hash v1 "
)

// Ring is one tenant's key ring. It is immutable and safe for concurrent use; a
// rotation yields a new Ring.
type Ring struct {
	active Version
	aeads  map[Version]cipher.AEAD
	index  []byte
	rand   io.Reader
	// hashers keeps, per purpose, a pool of HMAC states keyed with that purpose's HKDF
	// subkey (string -> *sync.Pool of hash.Hash): every stored identifier is hashed on
	// the webhook path, and keying an HMAC costs more than hashing a short identifier.
	hashers sync.Map
}

// Parse reads a ring from a Secret's data (see the constants above). unwrap, when not
// nil, unwraps each stored key (a KMS that keeps the key-encryption key, see Wrapper);
// nil means the Secret holds the keys themselves, the default.
func Parse(data map[string][]byte, unwrap func([]byte) ([]byte, error)) (*Ring, error) {
	if unwrap == nil {
		unwrap = func(b []byte) ([]byte, error) { return b, nil }
	}
	r := &Ring{aeads: map[Version]cipher.AEAD{}, rand: rand.Reader}
	for name, value := range data {
		num, ok := strings.CutPrefix(name, KeyPrefix)
		if !ok {
			continue
		}
		v, err := parseVersion(num)
		if err != nil {
			return nil, fmt.Errorf("datakey: %s: %w", name, err)
		}
		key, err := unwrap(value)
		if err != nil {
			return nil, fmt.Errorf("datakey: unwrap %s: %w", name, err)
		}
		aead, err := recordAEAD(key)
		if err != nil {
			return nil, fmt.Errorf("datakey: %s: %w", name, err)
		}
		r.aeads[v] = aead
	}
	active, err := parseVersion(strings.TrimSpace(string(data[ActiveKey])))
	if err != nil {
		return nil, fmt.Errorf("datakey: %s: %w", ActiveKey, err)
	}
	if _, ok := r.aeads[active]; !ok {
		return nil, fmt.Errorf("datakey: %s names version %d, which the ring does not hold", ActiveKey, active)
	}
	r.active = active
	index, err := unwrap(data[IndexKey])
	if err != nil {
		return nil, fmt.Errorf("datakey: unwrap %s: %w", IndexKey, err)
	}
	if len(index) != KeySize {
		return nil, fmt.Errorf("datakey: %s is %d bytes, want %d", IndexKey, len(index), KeySize)
	}
	r.index = slices.Clone(index)
	return r, nil
}

func parseVersion(s string) (Version, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != s {
		return 0, fmt.Errorf("version %q: want a decimal number from 1, without leading zeros", s)
	}
	return Version(n), nil
}

// recordAEAD is AES-256-GCM under the record key derived from one key version.
func recordAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(key), KeySize)
	}
	sub, err := hkdf.Key(sha256.New, key, nil, recordLabel, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive record key: %w", err)
	}
	block, err := aes.NewCipher(sub)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return cipher.NewGCM(block)
}

// NewSecretData is the data of a new ring's Secret: version 1, active, and an index
// key, all from rnd (crypto/rand.Reader in production). wrap, when not nil, wraps each
// key before it is stored (see Parse).
func NewSecretData(rnd io.Reader, wrap func([]byte) ([]byte, error)) (map[string][]byte, error) {
	data := map[string][]byte{ActiveKey: []byte("1")}
	for _, name := range []string{KeyPrefix + "1", IndexKey} {
		v, err := newKey(rnd, wrap)
		if err != nil {
			return nil, err
		}
		data[name] = v
	}
	return data, nil
}

// Rotate returns the data of a ring with one more key version, active, after every
// version in data: the old versions stay, so that records sealed under them remain
// readable until they are re-encrypted. data itself is not changed.
func Rotate(data map[string][]byte, rnd io.Reader, wrap func([]byte) ([]byte, error)) (map[string][]byte, Version, error) {
	var highest Version
	for name := range data {
		if num, ok := strings.CutPrefix(name, KeyPrefix); ok {
			v, err := parseVersion(num)
			if err != nil {
				return nil, 0, fmt.Errorf("datakey: %s: %w", name, err)
			}
			highest = max(highest, v)
		}
	}
	if highest == 0 {
		return nil, 0, errors.New("datakey: no key version to rotate from")
	}
	next := highest + 1
	key, err := newKey(rnd, wrap)
	if err != nil {
		return nil, 0, err
	}
	out := maps.Clone(data)
	out[KeyPrefix+strconv.FormatUint(uint64(next), 10)] = key
	out[ActiveKey] = []byte(strconv.FormatUint(uint64(next), 10))
	return out, next, nil
}

func newKey(rnd io.Reader, wrap func([]byte) ([]byte, error)) ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := io.ReadFull(rnd, key); err != nil {
		return nil, fmt.Errorf("datakey: generate key: %w", err)
	}
	if wrap == nil {
		return key, nil
	}
	w, err := wrap(key)
	if err != nil {
		return nil, fmt.Errorf("datakey: wrap key: %w", err)
	}
	return w, nil
}

// ActiveVersion is the version Seal uses.
func (r *Ring) ActiveVersion() Version { return r.active }

// Versions lists the versions the ring holds, in increasing order.
func (r *Ring) Versions() []Version {
	return slices.Sorted(maps.Keys(r.aeads))
}

// Seal encrypts plaintext as the record identified by identity (Identity) under the
// active key version.
func (r *Ring) Seal(plaintext, identity []byte) ([]byte, error) {
	out := make([]byte, headerSize+nonceSize, Overhead+len(plaintext))
	out[0] = formatV1
	binary.BigEndian.PutUint32(out[1:headerSize], uint32(r.active))
	nonce := out[headerSize:]
	if _, err := io.ReadFull(r.rand, nonce); err != nil {
		return nil, fmt.Errorf("datakey: nonce: %w", err)
	}
	return r.aeads[r.active].Seal(out, nonce, plaintext, additionalData(out[:headerSize], identity)), nil
}

// Open decrypts a record sealed by Seal for the same identity, under any version the
// ring holds.
func (r *Ring) Open(sealed, identity []byte) ([]byte, error) {
	v, err := VersionOf(sealed)
	if err != nil {
		return nil, err
	}
	aead, ok := r.aeads[v]
	if !ok {
		return nil, fmt.Errorf("%w (version %d)", ErrUnknownVersion, v)
	}
	nonce := sealed[headerSize : headerSize+nonceSize]
	plain, err := aead.Open(nil, nonce, sealed[headerSize+nonceSize:], additionalData(sealed[:headerSize], identity))
	if err != nil {
		return nil, ErrAuthentication
	}
	return plain, nil
}

// additionalData binds the header (format and version) and the record's identity.
func additionalData(header, identity []byte) []byte {
	ad := make([]byte, 0, len(header)+len(identity))
	return append(append(ad, header...), identity...)
}

// VersionOf is the key version a sealed record was sealed under: what a rotation reads
// to find the records still under an old version.
func VersionOf(sealed []byte) (Version, error) {
	if len(sealed) < Overhead || sealed[0] != formatV1 {
		return 0, ErrFormat
	}
	v := Version(binary.BigEndian.Uint32(sealed[1:headerSize]))
	if v == 0 {
		return 0, ErrFormat
	}
	return v, nil
}

// Hash is the keyed hash of a searchable identifier for one purpose (a column, say
// "message-id" or "subject"): HMAC-SHA-256 under HKDF(index key, purpose). The same
// value hashes alike in one tenant under every key version, and differently in another
// tenant or for another purpose.
func (r *Ring) Hash(purpose string, value []byte) []byte {
	p, ok := r.hashers.Load(purpose)
	if !ok {
		k, err := hkdf.Key(sha256.New, r.index, nil, hashLabel+purpose, KeySize)
		if err != nil {
			// Only a requested length above 255*32 bytes fails.
			panic(err)
		}
		p, _ = r.hashers.LoadOrStore(purpose, &sync.Pool{New: func() any { return hmac.New(sha256.New, k) }})
	}
	pool := p.(*sync.Pool)
	m := pool.Get().(hash.Hash)
	m.Reset()
	m.Write(value)
	sum := m.Sum(nil)
	pool.Put(m)
	return sum
}

// Identity encodes a record's identity for Seal and Open: the table (or kind) and the
// parts of its primary key, each length-prefixed so that no two different identities
// encode alike ("a","bc" is not "ab","c").
func Identity(table string, key ...string) []byte {
	var b []byte
	for _, part := range append([]string{table}, key...) {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	return b
}
