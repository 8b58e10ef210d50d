package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
)

// Encryption at rest (docs/encryption.md). A store opened with Keys seals every
// record's document (message text and raw fragment, contact profile fields, lead
// tokens, file URLs: everything a record holds beyond its searchable columns) and the
// bytes of shared files under the tenant's data key, and keeps the identifiers it
// must search by (message ids, subject identifiers, content addresses) as keyed
// hashes. A store opened without Keys stores them in clear, as stores did before.
//
// Stored forms, plain text so that both backends keep their TEXT columns:
//
//   - a sealed document is SealedDocPrefix followed by the base64 (standard, no
//     padding) of datakey.Ring.Seal's output; a document in clear is JSON and starts
//     with '{', so the two never look alike; a backend whose column holds bytes as
//     they are (SQLite) stores SealedDocBytesPrefix and that output itself instead
//     (SealDocBytes), and reads both;
//   - a hashed identifier is HashedIDPrefix followed by the base64url (no padding) of
//     the first HashedIDSize bytes of datakey.Ring.Hash; no platform identifier
//     starts with it. A message id in the grouped form (MessageIDsGrouped, the form
//     of every store created since) has MessageGroupSize bytes in front of those: the
//     keyed hash of the conversation the id names (MessageConversation), so that the
//     ids of one conversation sit together in the store's index, as they do in clear.

const (
	// SealedDocPrefix starts every sealed document stored as text.
	SealedDocPrefix = "~1:"
	// SealedDocBytesPrefix starts a sealed document stored as bytes (SealDocBytes), in
	// a column that holds bytes as they are (SQLite's): no JSON document and no text
	// form starts with a NUL.
	SealedDocBytesPrefix = "\x00"
	// HashedIDPrefix starts every hashed identifier.
	HashedIDPrefix = "h:"
	// HashedIDSize is how many bytes of the HMAC a hashed identifier keeps: 128 bits,
	// collision-free for any tenant's number of records.
	HashedIDSize = 16
)

// Purposes of keyed hashes: one per kind of identifier, so that equal values of
// different kinds hash differently. Every column holding a subject identifier (the
// subject, its alternative, wa_id, user_id, an identity change's old and new ids)
// uses PurposeSubject, so that one hash finds the person in all of them.
const (
	PurposeMessageID = "message-id"
	PurposeSubject   = "subject"
	PurposeLeadID    = "lead-id"
	PurposeContent   = "file-content"
)

// ErrKeyUnavailable: a sealed record cannot be opened, or a record sealed, because the
// tenant's data key is not available (not loaded yet, or destroyed by the erasure).
var ErrKeyUnavailable = errors.New("store: the tenant's data key is not available")

// MessageGroupSize is how many bytes of the conversation's keyed hash lead a message
// id in the grouped form: 65,536 groups, enough that a tenant's conversations rarely
// share one, few enough that each group's ids fill whole index pages in a large store.
const MessageGroupSize = 2

// purposeConversation keys the hash of a message id's conversation (MessageIDsGrouped).
const purposeConversation = "message-conversation"

// MessageIDForm is how a store keeps message ids as keyed hashes. A store records its
// form when it is created and keeps it: a hash cannot be turned into another form
// without the id, and lookups must compute exactly what was stored.
type MessageIDForm int

const (
	// MessageIDsUnknown: not decided yet (the store decides from what it holds).
	MessageIDsUnknown MessageIDForm = 0
	// MessageIDsFlat: the keyed hash of the id alone. Stores sealed before the grouped
	// form keep it. Every id lands on a random page of the store's message-id index,
	// so a delivery of ten messages writes ten index pages where in clear it wrote one.
	MessageIDsFlat MessageIDForm = 1
	// MessageIDsGrouped: the keyed hash of the id's conversation, then the keyed hash of
	// the id. It tells no more than the subject column beside it already does (which
	// messages belong to one person's conversation), and keeps a delivery's messages on
	// one or two index pages.
	MessageIDsGrouped MessageIDForm = 2
)

// Keys is what a store seals and hashes with. A nil *Keys stores in clear.
type Keys struct {
	src    datakey.Source
	msgIDs MessageIDForm
}

// NewKeys returns the Keys of a Source; a nil Source gives nil (clear).
func NewKeys(src datakey.Source) *Keys {
	if src == nil {
		return nil
	}
	return &Keys{src: src}
}

// MessageIDs is the form set by WithMessageIDs, MessageIDsUnknown if none.
func (k *Keys) MessageIDs() MessageIDForm {
	if k == nil {
		return MessageIDsUnknown
	}
	return k.msgIDs
}

// WithMessageIDs returns Keys that hash message ids in form f: a store sets the form
// it recorded once it has read it. nil stays nil (clear has no form).
func (k *Keys) WithMessageIDs(f MessageIDForm) *Keys {
	if k == nil {
		return nil
	}
	c := *k
	c.msgIDs = f
	return &c
}

// Enabled reports whether the store encrypts.
func (k *Keys) Enabled() bool { return k != nil }

// Sealing returns the ring in force for one unit of work (a transaction, a read):
// every seal, open and hash of that unit uses it, so that a rotation in the middle of
// a transaction cannot mix versions within it. With nil Keys it is the clear Sealing.
func (k *Keys) Sealing() (Sealing, error) {
	if k == nil {
		return Sealing{}, nil
	}
	r, err := k.src.Ring()
	if err != nil {
		return Sealing{}, fmt.Errorf("%w: %w", ErrKeyUnavailable, err)
	}
	f := k.msgIDs
	if f == MessageIDsUnknown {
		f = MessageIDsGrouped
	}
	return Sealing{ring: r, msgIDs: f}, nil
}

// Sealing seals, opens and hashes under one ring; its zero value is clear.
type Sealing struct {
	ring   *datakey.Ring
	msgIDs MessageIDForm
}

// Encrypts reports whether this Sealing seals (false: clear).
func (s Sealing) Encrypts() bool { return s.ring != nil }

// ActiveVersion is the key version new records are sealed under; 0 in clear.
func (s Sealing) ActiveVersion() datakey.Version {
	if s.ring == nil {
		return 0
	}
	return s.ring.ActiveVersion()
}

// SealDoc is the stored form of a record's document, identified by its table and
// the stored (hashed) values of its unique key: the identity is the associated
// data, so a sealed document moved to another record, table or tenant fails to open.
func (s Sealing) SealDoc(doc []byte, table string, key ...string) (string, error) {
	if s.ring == nil {
		return string(doc), nil
	}
	sealed, err := s.ring.Seal(doc, datakey.Identity(table, key...))
	if err != nil {
		return "", fmt.Errorf("seal %s record: %w", table, err)
	}
	return SealedDocPrefix + base64.RawStdEncoding.EncodeToString(sealed), nil
}

// SealDocBytes is SealDoc's sealed document as bytes, a third smaller than its text
// form, for a backend whose column stores bytes: OpenDoc and DocVersion read both
// forms. Only an encrypting Sealing has it; in clear a document stays text (SealDoc).
func (s Sealing) SealDocBytes(doc []byte, table string, key ...string) ([]byte, error) {
	if s.ring == nil {
		return nil, fmt.Errorf("seal %s record: %w", table, ErrKeyUnavailable)
	}
	sealed, err := s.ring.Seal(doc, datakey.Identity(table, key...))
	if err != nil {
		return nil, fmt.Errorf("seal %s record: %w", table, err)
	}
	return append([]byte(SealedDocBytesPrefix), sealed...), nil
}

// OpenDoc is the document a stored form holds. A document in clear (stored before
// the store encrypted) is returned as it is; a sealed one needs the ring it was
// sealed under and the same identity.
func (s Sealing) OpenDoc(stored string, table string, key ...string) ([]byte, error) {
	raw, sealed, err := decodeSealed(stored)
	if err != nil {
		return nil, fmt.Errorf("open %s record: %w", table, err)
	}
	if !sealed {
		return []byte(stored), nil
	}
	if s.ring == nil {
		return nil, fmt.Errorf("open %s record: %w", table, ErrKeyUnavailable)
	}
	doc, err := s.ring.Open(raw, datakey.Identity(table, key...))
	if err != nil {
		return nil, fmt.Errorf("open %s record: %w", table, err)
	}
	return doc, nil
}

// SealBytes seals one chunk of a shared file's bytes, stored under the content
// address addr (ID(PurposeContent, ...)): its index and whether it is the last are
// part of the identity, so chunks cannot be reordered, dropped at the end or moved
// to another file. Clear Sealing returns the chunk as it is.
func (s Sealing) SealBytes(chunk []byte, addr string, index int, last bool) ([]byte, error) {
	if s.ring == nil {
		return chunk, nil
	}
	out, err := s.ring.Seal(chunk, chunkIdentity(addr, index, last))
	if err != nil {
		return nil, fmt.Errorf("seal file bytes: %w", err)
	}
	return out, nil
}

// OpenBytes opens a chunk sealed by SealBytes. Clear Sealing returns it as it is:
// a store that encrypts knows from the file's record whether its bytes are sealed.
func (s Sealing) OpenBytes(stored []byte, addr string, index int, last bool) ([]byte, error) {
	if s.ring == nil {
		return stored, nil
	}
	out, err := s.ring.Open(stored, chunkIdentity(addr, index, last))
	if err != nil {
		return nil, fmt.Errorf("open file bytes: %w", err)
	}
	return out, nil
}

func chunkIdentity(addr string, index int, last bool) []byte {
	return datakey.Identity("file-bytes", addr, strconv.Itoa(index), strconv.FormatBool(last))
}

// ID is the stored form of a searchable identifier: its keyed hash for the purpose,
// or the identifier itself in clear. The empty identifier stays empty (an absent
// value). It always hashes: a caller holding a stored value that may already be a
// hash (the reseal pass, a walk over stored columns) checks IsHashedID first.
func (s Sealing) ID(purpose, value string) string {
	if s.ring == nil || value == "" {
		return value
	}
	var buf [MessageGroupSize + HashedIDSize]byte
	out := buf[:0]
	if purpose == PurposeMessageID && s.msgIDs == MessageIDsGrouped {
		conv := MessageConversation(value)
		if conv == nil {
			conv = []byte(value) // no conversation known: the id is its own group
		}
		out = append(out, s.ring.Hash(purposeConversation, conv)[:MessageGroupSize]...)
	}
	out = append(out, s.ring.Hash(purpose, []byte(value))[:HashedIDSize]...)
	return HashedIDPrefix + base64.RawURLEncoding.EncodeToString(out)
}

// MessageConversation is the part of a message id that every message of one
// conversation shares, nil if the id has none that is known. A WhatsApp message id
// ("wamid." and standard base64) encodes a record that starts with the customer's
// WhatsApp id, in messages from and to that customer alike: 0x1C 0x18, its length,
// its digits (docs/encryption.md). Meta does not document the record: an id that
// does not parse as such is simply its own group, which costs index pages, never
// correctness (a lookup computes the same form as the write did).
func MessageConversation(id string) []byte {
	body, ok := strings.CutPrefix(id, "wamid.")
	if !ok {
		return nil
	}
	// The record's head: 0x1C 0x18, a length of at most 20, then that many digits, all
	// within the first 32 characters (24 bytes).
	var head [24]byte
	n := min(len(body)/4*4, 32)
	got, err := base64.StdEncoding.Decode(head[:], []byte(body[:n]))
	if err != nil || got < 4 || head[0] != 0x1c || head[1] != 0x18 {
		return nil
	}
	l := int(head[2])
	if l < 1 || l > 20 || 3+l > got {
		return nil
	}
	for _, c := range head[3 : 3+l] {
		if c < '0' || c > '9' {
			return nil
		}
	}
	return append([]byte(nil), head[3:3+l]...)
}

// IDs is ID of each value, in order.
func (s Sealing) IDs(purpose string, values []string) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = s.ID(purpose, v)
	}
	return out
}

// IsHashedID reports whether a stored identifier is a keyed hash.
func IsHashedID(v string) bool { return strings.HasPrefix(v, HashedIDPrefix) }

// IsSealedDoc reports whether a stored document is sealed (in either form).
func IsSealedDoc(stored string) bool {
	return strings.HasPrefix(stored, SealedDocPrefix) || strings.HasPrefix(stored, SealedDocBytesPrefix)
}

// DocVersion is the key version a stored document is sealed under, 0 for one in
// clear: what a reseal pass reads to find the records to bring to the active version.
func DocVersion(stored string) (datakey.Version, error) {
	raw, sealed, err := decodeSealed(stored)
	if err != nil || !sealed {
		return 0, err
	}
	return datakey.VersionOf(raw)
}

func decodeSealed(stored string) ([]byte, bool, error) {
	if rest, ok := strings.CutPrefix(stored, SealedDocBytesPrefix); ok {
		return []byte(rest), true, nil
	}
	if !IsSealedDoc(stored) {
		return nil, false, nil
	}
	raw, err := base64.RawStdEncoding.DecodeString(stored[len(SealedDocPrefix):])
	if err != nil {
		return nil, true, fmt.Errorf("sealed document: %w", datakey.ErrFormat)
	}
	return raw, true, nil
}

// Resealer is implemented by the stores: the background pass that brings every
// record to the active key version. It seals documents and file bytes stored in
// clear (a store that encrypted nothing before, or a ring newly given), hashes the
// identifiers stored in clear, and reseals what an older key version sealed. The
// pass keeps its position in the store, so that it resumes where a crash left it,
// and each call is one short transaction, so that deliveries are not held up.
type Resealer interface {
	// Reseal brings up to limit records (documents, file chunks) to the active
	// version and reports how many it changed and whether the store is now wholly
	// under the active version. Without Keys it does nothing and reports done.
	Reseal(ctx context.Context, limit int) (changed int, done bool, err error)
	// EncryptionState is what the pass has established.
	EncryptionState(ctx context.Context) (EncryptionState, error)
}

// EncryptionState says how far a store is encrypted.
type EncryptionState struct {
	// Encrypts: the store was opened with Keys.
	Encrypts bool `json:"encrypts"`
	// ActiveVersion is the key version new records are sealed under.
	ActiveVersion datakey.Version `json:"activeVersion,omitempty"`
	// SealedVersion is the version every record was brought to by the last complete
	// pass, 0 when no pass has completed: the store is fully encrypted under the
	// active key when it equals ActiveVersion.
	SealedVersion datakey.Version `json:"sealedVersion,omitempty"`
}

// FullyEncrypted reports whether every record is sealed under the active version.
func (e EncryptionState) FullyEncrypted() bool {
	return e.Encrypts && e.ActiveVersion != 0 && e.SealedVersion == e.ActiveVersion
}
