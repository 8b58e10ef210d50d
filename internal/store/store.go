// Package store defines how the ingest worker keeps a tenant's records, independent of the
// database behind it. Backends live in subpackages (sqlite now, postgres later) and all
// run the conformance suite in storetest.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("store closed")

// ErrReadOnly is returned by writes on a store opened read-only (the export command).
var ErrReadOnly = errors.New("store opened read-only")

// Store keeps one tenant's records.
type Store interface {
	// Commit durably applies one delivery's records as one unit: it returns nil only
	// after they are on disk, and then the delivery may be acknowledged. Messages are
	// unique by platform message id (redeliveries are absorbed); a status never moves
	// back to an earlier state; deletions remove the message and keep a tombstone.
	Commit(ctx context.Context, b *meta.Batch) (CommitResult, error)
	// Erase deletes everything stored about one end user and writes a ledger entry that
	// holds only req.SubjectRef (a keyed hash), never the identifier.
	Erase(ctx context.Context, req EraseRequest) (Counts, error)
	// Export calls emit for every stored record, or only for one subject's records,
	// from one consistent snapshot.
	Export(ctx context.Context, f Filter, emit func(Record) error) error
	// Prune deletes one bounded batch of records older than req.Before by their own
	// timestamps, as one short transaction (retention; see retention.go). Callers repeat
	// while the result says More.
	Prune(ctx context.Context, req PruneRequest) (Pruned, error)
	// LeadToken returns the notification token stored with lead attribution record id of
	// platform, or "" when it has none (or is gone: erased, pruned). This is the only
	// way out for a token: export never carries it (store/leads.go).
	LeadToken(ctx context.Context, platform meta.Platform, id string) (meta.Secret, error)
	// Close waits for queued commits and closes the database.
	Close() error
	// FileStore keeps shared files' bytes and their fetch queue (files.go).
	FileStore
}

// CommitResult tells what a commit changed, for metrics.
type CommitResult struct {
	MessagesNew       int // messages stored for the first time
	MessagesDuplicate int // redeliveries (or messages already deleted) absorbed
	StatusesApplied   int // statuses that advanced a message's state
	StatusesStale     int // statuses behind what was already stored
	FilesNew          int
	ContactsUpserted  int
	MessagesDeleted   int
	IdentityChanges   int // identity changes stored for the first time
	LeadsNew          int // leads (referrals, opt-ins) stored for the first time
}

// Add accumulates o into r.
func (r *CommitResult) Add(o CommitResult) {
	r.MessagesNew += o.MessagesNew
	r.MessagesDuplicate += o.MessagesDuplicate
	r.StatusesApplied += o.StatusesApplied
	r.StatusesStale += o.StatusesStale
	r.FilesNew += o.FilesNew
	r.ContactsUpserted += o.ContactsUpserted
	r.MessagesDeleted += o.MessagesDeleted
	r.IdentityChanges += o.IdentityChanges
	r.LeadsNew += o.LeadsNew
}

// Subject names one end user: a WhatsApp wa_id or business-scoped user id, a Messenger
// PSID or an Instagram IGSID. An empty Platform matches every platform.
type Subject struct {
	Platform meta.Platform
	ID       string
}

// Filter selects what Export emits; a nil Subject means everything.
type Filter struct {
	Subject *Subject
}

// EraseRequest asks to erase one subject's records.
type EraseRequest struct {
	Subject Subject
	// Channel limits the erasure to one channel's records; empty means every channel.
	Channel string
	// Scope selects the kinds of records erased; the zero value erases every kind.
	Scope       Scope
	SubjectRef  string // keyed hash of the identifier, recorded in the ledger
	RequestedAt time.Time
}

// AddIdentifiers appends to ids each of more that is neither empty nor in seen, and marks
// it seen: backends use it to gather every identifier a person's contact rows link
// (subject, wa_id, business-scoped user id) before erasing or exporting by subject.
func AddIdentifiers(ids []string, seen map[string]bool, more ...string) []string {
	for _, id := range more {
		if id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

// Scope is a set of kinds of records an erasure removes (DeletionRequest spec.scope).
type Scope uint8

const (
	// ScopeMessages: messages in both directions, their delivery statuses and the
	// subject's read and delivery receipts.
	ScopeMessages Scope = 1 << iota
	// ScopeContacts: contact (lead) records, the identity changes that link the
	// person's identifiers, and the lead attribution records (referrals, opt-ins and the
	// notification tokens they carry): where the person came from is part of who they
	// are to the business, as their contact record is.
	ScopeContacts
	// ScopeFiles: file records and their stored bytes (a content another record that
	// stays still refers to is kept for that record).
	ScopeFiles
	// ScopeAll is every kind; the zero Scope means the same.
	ScopeAll = ScopeMessages | ScopeContacts | ScopeFiles
)

// Has reports whether s includes every kind of k (the zero Scope includes everything).
func (s Scope) Has(k Scope) bool { return s == 0 || s&k == k }

// Names lists the kinds in s, in the API's spelling and order, for the ledger.
func (s Scope) Names() []string {
	var names []string
	for _, k := range []struct {
		s    Scope
		name string
	}{{ScopeMessages, "Messages"}, {ScopeContacts, "Contacts"}, {ScopeFiles, "Files"}} {
		if s.Has(k.s) {
			names = append(names, k.name)
		}
	}
	return names
}

// ParseScope is the inverse of Names; unknown names are errors.
func ParseScope(names []string) (Scope, error) {
	var s Scope
	for _, n := range names {
		switch n {
		case "Messages":
			s |= ScopeMessages
		case "Contacts":
			s |= ScopeContacts
		case "Files":
			s |= ScopeFiles
		default:
			return 0, fmt.Errorf("unknown erasure scope %q", n)
		}
	}
	return s, nil
}

// Counts of records per kind, as erased.
type Counts struct {
	Contacts int `json:"contacts"` // contact records, identity changes and leads
	Messages int `json:"messages"`
	Statuses int `json:"statuses"` // statuses and read/delivery receipts
	Files    int `json:"files"`
	// FileBytes is the size of the stored contents of the file records counted in Files
	// (a content another record still shares is counted but kept: see files.go).
	FileBytes int64 `json:"fileBytes,omitempty"`
}

// Erasure is a ledger entry: proof of an erasure without the personal data it erased.
type Erasure struct {
	SubjectRef string        `json:"subjectRef"`
	Platform   meta.Platform `json:"platform,omitempty"`
	// Channel is set when the erasure was limited to one channel.
	Channel string `json:"channel,omitempty"`
	// Scope lists the kinds erased (absent in entries written before scopes existed,
	// which erased every kind).
	Scope       []string  `json:"scope,omitempty"`
	RequestedAt time.Time `json:"requestedAt,omitzero"`
	CompletedAt time.Time `json:"completedAt"`
	Counts      Counts    `json:"counts"`
}

// Record kinds emitted by Export.
const (
	KindContact = "contact"
	KindMessage = "message"
	KindStatus  = "status"
	KindReceipt = "receipt"
	KindFile    = "file"
	KindErasure = "erasure"
	// KindIdentityChange records link an end user's old identifiers to new ones.
	KindIdentityChange = "identityChange"
	// KindLead records are referrals and opt-ins: where a customer came from.
	KindLead = "lead"
)

// Record is one exported record: its kind and its JSON document (a meta.Contact,
// meta.Message, meta.Status, meta.Receipt, meta.File, meta.IdentityChange, meta.Lead or
// Erasure).
type Record struct {
	Kind string
	Doc  json.RawMessage
}

// MarshalJSON flattens the record into one object with a "kind" and a "schemaVersion"
// key, the JSON-lines shape of `ingest-worker export` (docs/export-format.md).
func (r Record) MarshalJSON() ([]byte, error) {
	doc := r.upgraded()
	if len(doc) < 2 || doc[0] != '{' {
		return nil, fmt.Errorf("record %s: document is not an object", r.Kind)
	}
	kind, err := json.Marshal(r.Kind)
	if err != nil {
		return nil, fmt.Errorf("marshal kind: %w", err)
	}
	out := make([]byte, 0, len(doc)+len(kind)+32)
	out = append(out, `{"kind":`...)
	out = append(out, kind...)
	out = append(out, `,"schemaVersion":`...)
	out = strconv.AppendInt(out, ExportSchemaVersion, 10)
	if len(doc) > 2 {
		out = append(out, ',')
	}
	return append(out, doc[1:]...), nil
}

// Decode unmarshals the record's document into v.
func (r Record) Decode(v any) error {
	if err := json.Unmarshal(r.upgraded(), v); err != nil {
		return fmt.Errorf("decode %s record: %w", r.Kind, err)
	}
	return nil
}

// Validate rejects records a backend cannot key. The parser never produces them; this
// guards the interface against other callers.
func Validate(b *meta.Batch) error {
	// By index: these run twice per delivery (per part in the server, then in Commit)
	// and a range by value would copy every record.
	for i := range b.Messages {
		if m := &b.Messages[i]; m.ID == "" || m.Subject == "" || m.Platform == "" {
			return errors.New("message without platform, id or subject")
		}
	}
	for i := range b.Statuses {
		if s := &b.Statuses[i]; s.MessageID == "" || meta.StateRank(s.State) == 0 {
			return errors.New("status without message id or with unknown state")
		}
	}
	for i := range b.Contacts {
		if c := &b.Contacts[i]; c.Subject == "" || c.Platform == "" {
			return errors.New("contact without platform or subject")
		}
	}
	for i := range b.Files {
		if b.Files[i].MessageID == "" {
			return errors.New("file without message id")
		}
	}
	for i := range b.Deletions {
		if b.Deletions[i].MessageID == "" {
			return errors.New("deletion without message id")
		}
	}
	for i := range b.Receipts {
		if b.Receipts[i].Subject == "" {
			return errors.New("receipt without subject")
		}
	}
	for i := range b.Leads {
		if l := &b.Leads[i]; l.Platform == "" || l.ID == "" || l.Subject == "" {
			return errors.New("lead without platform, id or subject")
		}
	}
	for i := range b.Identities {
		c := &b.Identities[i]
		if c.Platform == "" || c.MessageID == "" || c.OldWaID+c.OldUserID == "" || c.NewWaID+c.NewUserID == "" {
			return errors.New("identity change without platform, message id, old or new identifier")
		}
	}
	return nil
}
