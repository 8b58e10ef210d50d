package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// Retention (Tenant spec.retention.messagesMaxAge) deletes records by age. What one
// Prune call deletes, in one short transaction:
//
//   - up to Limit messages whose own timestamp (the platform's, not the time of receipt)
//     is before Before, oldest first, together with every reaction to them (a reaction is
//     a message of its own, newer than the one it reacts to), their delivery statuses and
//     their file records and the stored bytes no other record shares (see
//     PruneOps.DeleteFilesOf);
//   - up to Limit delivery statuses whose own timestamp is before Before: statuses of
//     messages the business sent through the API, which are not stored as messages
//     (a status is never older than its message, so its message is older still);
//   - up to Limit Messenger/Instagram read and delivery receipts whose watermark is
//     before Before;
//   - the identity changes (a WhatsApp number change) those messages announced: the
//     link between a person's old and new identifiers is as old as its system message;
//   - up to Limit lead attribution records (referrals, opt-ins and their notification
//     tokens) whose own timestamp is before Before;
//   - every contact (lead) those records belonged to that has no message, status,
//     receipt, file or lead attribution record left in its channel. A contact is the person behind the
//     conversation, not a record of its own: keeping it after its conversation is gone
//     would keep a name and a phone number with no age at all. Contacts the pruned
//     records did not belong to are never touched, so a contact that has just arrived
//     without a message yet stays.
//
// Messages and statuses without a timestamp (Meta always sends one) have no age and are
// kept. The erasure ledger (keyed hashes and counts) and the tombstones of unsent
// messages (a platform message id and a time, no subject) are kept: the first is the
// proof of erasures, the second keeps a late redelivery of an unsent message out. A redelivery of a pruned message (Meta retries for at most a few days,
// retention is at least a day) is stored again and pruned by the next run.

// RetentionIndexes find records by age and reactions by target, in the SQL both
// backends speak. Backends create them after adding retention's columns (reacts_to,
// statuses.ts) to stores from before retention. Partial: rows without a timestamp, and
// messages that are not reactions, cost nothing on insert.
const RetentionIndexes = `
CREATE INDEX IF NOT EXISTS messages_ts ON messages(ts) WHERE ts IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_reacts_to ON messages(platform, reacts_to) WHERE reacts_to IS NOT NULL;
CREATE INDEX IF NOT EXISTS statuses_ts ON statuses(ts) WHERE ts IS NOT NULL;
CREATE INDEX IF NOT EXISTS receipts_watermark ON receipts(watermark);
`

// ReactsTo is the message id a reaction reacts to, or "": the column (reacts_to) that
// lets retention take a reaction along with its target.
func ReactsTo(m *meta.Message) string {
	if m.Reaction == nil {
		return ""
	}
	return m.Reaction.MessageID
}

// PruneRequest asks for one batch of retention.
type PruneRequest struct {
	// Before is the cutoff: records whose own timestamp is earlier are deleted.
	Before time.Time
	// Limit caps the messages, the statuses aged on their own and the receipts one call
	// deletes (each separately), so that one call is one short transaction.
	Limit int
}

// Pruned is what one Prune call deleted.
type Pruned struct {
	// Counts per kind: Messages includes reactions, Statuses includes receipts.
	Counts Counts
	// More is true when a limit was reached: there may be more to prune, call again.
	More bool
}

// Add accumulates o into p (More is o's).
func (p *Pruned) Add(o Pruned) {
	p.Counts.Add(o.Counts)
	p.More = o.More
}

// Add accumulates o into c.
func (c *Counts) Add(o Counts) {
	c.Contacts += o.Contacts
	c.Messages += o.Messages
	c.Statuses += o.Statuses
	c.Files += o.Files
	c.FileBytes += o.FileBytes
}

// Identity is who a pruned record belonged to: one identifier in one channel.
type Identity struct {
	Platform meta.Platform
	Channel  string
	ID       string
}

// PrunedRecord is a deleted message, status or receipt: its key, and its subject
// identifiers for the contact check.
type PrunedRecord struct {
	Platform   meta.Platform
	MessageID  string // empty for receipts
	Channel    string
	Subject    string
	SubjectAlt string
}

// PrunedContact is a contact row that a pruned record belonged to.
type PrunedContact struct {
	RowID int64
	Key   Identity // its own platform, channel and subject
	IDs   []string // its non-empty subject, wa_id and user id
}

// PruneOps are one backend's statements for one Prune batch, all inside one
// transaction. PruneBatch is the algorithm; the backends only speak their dialect.
type PruneOps interface {
	// DeleteAgedMessages deletes up to limit messages with a timestamp before before,
	// oldest first, and returns them.
	DeleteAgedMessages(ctx context.Context, before time.Time, limit int) ([]PrunedRecord, error)
	// DeleteReactionsTo deletes the reactions to msgs and returns them.
	DeleteReactionsTo(ctx context.Context, msgs []PrunedRecord) ([]PrunedRecord, error)
	// DeleteStatusesOf deletes the statuses of msgs.
	DeleteStatusesOf(ctx context.Context, msgs []PrunedRecord) (int, error)
	// DeleteFilesOf deletes the file records of msgs and the bytes no other record
	// refers to (in the same transaction, or for bytes on a volume after it commits,
	// from the content addresses the deleted rows name), and returns how many records
	// went and the size of their stored contents.
	DeleteFilesOf(ctx context.Context, msgs []PrunedRecord) (int, int64, error)
	// DeleteIdentityChangesOf deletes the identity changes (a number change) that msgs
	// announced, the link between two identifiers having the age of its system message,
	// and returns how many went and every identifier they named.
	DeleteIdentityChangesOf(ctx context.Context, msgs []PrunedRecord) (int, []Identity, error)
	// DeleteAgedStatuses deletes up to limit statuses with a timestamp before before.
	DeleteAgedStatuses(ctx context.Context, before time.Time, limit int) ([]PrunedRecord, error)
	// DeleteAgedReceipts deletes up to limit receipts with a watermark before before.
	DeleteAgedReceipts(ctx context.Context, before time.Time, limit int) ([]PrunedRecord, error)
	// LockIdentities keeps concurrent writers from linking a new record to these
	// identifiers until the transaction ends (PostgreSQL; a no-op under SQLite's single
	// writer).
	LockIdentities(ctx context.Context, ids []Identity) error
	// ContactsOf returns the contacts stored under id in its platform and channel, by
	// subject, wa_id or user id.
	ContactsOf(ctx context.Context, id Identity) ([]PrunedContact, error)
	// HasRecords reports whether any message, status, receipt or file of the platform
	// and channel is filed under one of ids.
	HasRecords(ctx context.Context, platform meta.Platform, channel string, ids []string) (bool, error)
	// DeleteContact deletes one contact row.
	DeleteContact(ctx context.Context, c PrunedContact) error
	// DeleteAgedLeads deletes up to limit lead attribution records with a timestamp
	// before before, oldest first, tokens and all, and returns them (MessageID holds the
	// lead's id).
	DeleteAgedLeads(ctx context.Context, before time.Time, limit int) ([]PrunedRecord, error)
	// HasLeads reports whether a lead attribution record of the platform and channel is
	// filed under one of ids: a contact with a touch younger than the cutoff stays.
	HasLeads(ctx context.Context, platform meta.Platform, channel string, ids []string) (bool, error)
}

// ErrPruneLimit is returned for a PruneRequest without a positive Limit.
var ErrPruneLimit = errors.New("prune: limit must be positive")

// PruneBatch runs one batch of retention with a backend's ops (see the comment at the
// top of this file for what goes).
func PruneBatch(ctx context.Context, ops PruneOps, req PruneRequest) (Pruned, error) {
	if req.Limit <= 0 {
		return Pruned{}, ErrPruneLimit
	}
	var p Pruned
	// changed: the identifiers of pruned identity changes. A change merged the person's
	// contact under the new identifiers while the old messages stay filed under the old
	// ones: the contact check must look under both.
	var changed []Identity
	msgs, err := ops.DeleteAgedMessages(ctx, req.Before, req.Limit)
	if err != nil {
		return Pruned{}, fmt.Errorf("prune messages: %w", err)
	}
	p.More = len(msgs) >= req.Limit
	if len(msgs) > 0 {
		reactions, err := ops.DeleteReactionsTo(ctx, msgs)
		if err != nil {
			return Pruned{}, fmt.Errorf("prune reactions: %w", err)
		}
		msgs = append(msgs, reactions...)
		if p.Counts.Statuses, err = ops.DeleteStatusesOf(ctx, msgs); err != nil {
			return Pruned{}, fmt.Errorf("prune statuses of messages: %w", err)
		}
		if p.Counts.Files, p.Counts.FileBytes, err = ops.DeleteFilesOf(ctx, msgs); err != nil {
			return Pruned{}, fmt.Errorf("prune files: %w", err)
		}
		// Counted with contacts, as subject erasure counts them: a change is part of
		// the person's contact record.
		if p.Counts.Contacts, changed, err = ops.DeleteIdentityChangesOf(ctx, msgs); err != nil {
			return Pruned{}, fmt.Errorf("prune identity changes: %w", err)
		}
	}
	p.Counts.Messages = len(msgs)
	statuses, err := ops.DeleteAgedStatuses(ctx, req.Before, req.Limit)
	if err != nil {
		return Pruned{}, fmt.Errorf("prune statuses: %w", err)
	}
	receipts, err := ops.DeleteAgedReceipts(ctx, req.Before, req.Limit)
	if err != nil {
		return Pruned{}, fmt.Errorf("prune receipts: %w", err)
	}
	leads, err := ops.DeleteAgedLeads(ctx, req.Before, req.Limit)
	if err != nil {
		return Pruned{}, fmt.Errorf("prune leads: %w", err)
	}
	p.More = p.More || len(statuses) >= req.Limit || len(receipts) >= req.Limit || len(leads) >= req.Limit
	p.Counts.Statuses += len(statuses) + len(receipts)
	// Counted with contacts, as subject erasure counts them.
	p.Counts.Contacts += len(leads)

	all := append(append(append(msgs, statuses...), receipts...), leads...)
	contacts, err := pruneContacts(ctx, ops, append(identitiesOf(all), changed...))
	if err != nil {
		return Pruned{}, fmt.Errorf("prune contacts: %w", err)
	}
	p.Counts.Contacts += contacts
	return p, nil
}

// identitiesOf lists the distinct identities the records were filed under.
func identitiesOf(recs []PrunedRecord) []Identity {
	seen := map[Identity]bool{}
	var out []Identity
	for _, r := range recs {
		for _, id := range []string{r.Subject, r.SubjectAlt} {
			k := Identity{r.Platform, r.Channel, id}
			if id != "" && !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out
}

// pruneContacts deletes the contacts of ids that have no record left in their channel.
func pruneContacts(ctx context.Context, ops PruneOps, ids []Identity) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	if err := ops.LockIdentities(ctx, ids); err != nil {
		return 0, err
	}
	done := map[int64]bool{}
	n := 0
	for _, id := range ids {
		contacts, err := ops.ContactsOf(ctx, id)
		if err != nil {
			return n, err
		}
		for _, c := range contacts {
			if done[c.RowID] {
				continue
			}
			done[c.RowID] = true
			// The contact's other identifiers may not be locked yet.
			var more []Identity
			for _, other := range c.IDs {
				more = append(more, Identity{c.Key.Platform, c.Key.Channel, other})
			}
			if err := ops.LockIdentities(ctx, more); err != nil {
				return n, err
			}
			left, err := ops.HasRecords(ctx, c.Key.Platform, c.Key.Channel, c.IDs)
			if err != nil {
				return n, err
			}
			if !left {
				if left, err = ops.HasLeads(ctx, c.Key.Platform, c.Key.Channel, c.IDs); err != nil {
					return n, err
				}
			}
			if left {
				continue
			}
			if err := ops.DeleteContact(ctx, c); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// ChangeRows are the rows of a deleted identity change: platform, channel and its four
// identifier columns (empty when NULL). Both drivers' row sets satisfy it; the caller
// closes them.
type ChangeRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// ScanChangedIdentities reads deleted identity changes (platform, channel, old wa_id, old
// user id, new wa_id, new user id) and returns how many there were and
// the identities they named.
func ScanChangedIdentities(rows ChangeRows) (int, []Identity, error) {
	n := 0
	var out []Identity
	for rows.Next() {
		var platform, channel string
		var ids [4]string
		if err := rows.Scan(&platform, &channel, &ids[0], &ids[1], &ids[2], &ids[3]); err != nil {
			return n, out, err
		}
		n++
		for _, id := range ids {
			if id != "" {
				out = append(out, Identity{meta.Platform(platform), channel, id})
			}
		}
	}
	return n, out, rows.Err()
}
