package meta

import (
	"encoding/json"
	"time"
)

// Platform names match MetaChannel's spec.platform enum.
type Platform string

const (
	WhatsApp  Platform = "WhatsApp"
	Messenger Platform = "Messenger"
	Instagram Platform = "Instagram"
)

// Direction of a message relative to the business.
type Direction string

const (
	Inbound  Direction = "inbound"  // sent by the end user
	Outbound Direction = "outbound" // sent by the business (echoes)
)

// Delivery states of an outbound message. Their Rank orders them so that the store can
// keep the furthest state whatever order Meta's webhooks arrive in.
const (
	StateSent      = "sent"
	StateDelivered = "delivered"
	StateRead      = "read"
	StatePlayed    = "played"
	StateFailed    = "failed"
)

// StateRank returns the position of state in sent < delivered < read < played < failed,
// or 0 for states we do not track. Failed ranks highest: it is Meta's final word on a
// message, and a "sent" that arrives after it must not hide the failure.
func StateRank(state string) int {
	switch state {
	case StateSent:
		return 1
	case StateDelivered:
		return 2
	case StateRead:
		return 3
	case StatePlayed:
		return 4
	case StateFailed:
		return 5
	}
	return 0
}

// Batch holds the normalized records of one delivery or of one part of it. All times are UTC.
type Batch struct {
	Contacts  []Contact  `json:"contacts,omitempty"`
	Messages  []Message  `json:"messages,omitempty"`
	Statuses  []Status   `json:"statuses,omitempty"`
	Receipts  []Receipt  `json:"receipts,omitempty"`
	Files     []File     `json:"files,omitempty"`
	Deletions []Deletion `json:"deletions,omitempty"`
	// Identities are identity changes (WhatsApp system messages): they link an end
	// user's old identifiers to the new ones.
	Identities []IdentityChange `json:"identities,omitempty"`
	// Leads are the touches that tell where a customer came from: referrals (an ad, a
	// link, a plugin, a Click-to-WhatsApp ad) and opt-ins.
	Leads []Lead `json:"leads,omitempty"`
}

// Len is the number of records in the batch.
func (b *Batch) Len() int {
	return len(b.Contacts) + len(b.Messages) + len(b.Statuses) + len(b.Receipts) + len(b.Files) + len(b.Deletions) + len(b.Identities) + len(b.Leads)
}

// Append adds o's records to b.
func (b *Batch) Append(o *Batch) {
	b.Contacts = append(b.Contacts, o.Contacts...)
	b.Messages = append(b.Messages, o.Messages...)
	b.Statuses = append(b.Statuses, o.Statuses...)
	b.Receipts = append(b.Receipts, o.Receipts...)
	b.Files = append(b.Files, o.Files...)
	b.Deletions = append(b.Deletions, o.Deletions...)
	b.Identities = append(b.Identities, o.Identities...)
	b.Leads = append(b.Leads, o.Leads...)
}

// SetChannel stamps every record with the name of the channel it was attributed to. The
// parser does not know channel names; the ingest layer does, after attribution.
func (b *Batch) SetChannel(name string) {
	for i := range b.Contacts {
		b.Contacts[i].Channel = name
	}
	for i := range b.Messages {
		b.Messages[i].Channel = name
	}
	for i := range b.Statuses {
		b.Statuses[i].Channel = name
	}
	for i := range b.Receipts {
		b.Receipts[i].Channel = name
	}
	for i := range b.Files {
		b.Files[i].Channel = name
	}
	for i := range b.Deletions {
		b.Deletions[i].Channel = name
	}
	for i := range b.Identities {
		b.Identities[i].Channel = name
	}
	for i := range b.Leads {
		b.Leads[i].Channel = name
	}
}

// Subject fields: every record that belongs to an end user carries Subject, the platform's
// preferred key for that user (WhatsApp business-scoped user id when present, else wa_id;
// Messenger PSID; Instagram IGSID), and SubjectAlt, the WhatsApp wa_id when Subject is a
// business-scoped id. Erasure and export match either.

// Contact is an end user (lead) as seen on one channel.
type Contact struct {
	Platform     Platform `json:"platform"`
	Channel      string   `json:"channel"`
	Subject      string   `json:"subject"`
	WaID         string   `json:"waID,omitempty"`
	UserID       string   `json:"userID,omitempty"`
	ParentUserID string   `json:"parentUserID,omitempty"`
	Username     string   `json:"username,omitempty"`
	Name         string   `json:"name,omitempty"`
}

// Message is one inbound message or outbound echo.
type Message struct {
	Platform   Platform  `json:"platform"`
	Channel    string    `json:"channel"`
	ID         string    `json:"id"`
	Subject    string    `json:"subject"`
	SubjectAlt string    `json:"subjectAlt,omitempty"`
	Direction  Direction `json:"direction"`
	Type       string    `json:"type"`
	Text       string    `json:"text,omitempty"`
	Timestamp  time.Time `json:"timestamp,omitzero"`
	ReplyTo    string    `json:"replyTo,omitempty"`
	Forwarded  bool      `json:"forwarded,omitempty"`
	// GroupID is the WhatsApp group the message was posted in: the sender is one member
	// of a group conversation, not in a one-to-one chat with the business.
	GroupID  string          `json:"groupID,omitempty"`
	Reaction *Reaction       `json:"reaction,omitempty"`
	Location *Location       `json:"location,omitempty"`
	Reply    *Reply          `json:"reply,omitempty"`
	Order    *Order          `json:"order,omitempty"`
	Errors   []Error         `json:"errors,omitempty"`
	Raw      json.RawMessage `json:"raw,omitempty"` // the message's own JSON fragment, compacted
}

// Reaction to another message; an empty Emoji means the reaction was removed
// (a WhatsApp reaction without emoji, a Messenger/Instagram "unreact").
type Reaction struct {
	MessageID string `json:"messageID"`
	Emoji     string `json:"emoji,omitempty"`
	// Name is Messenger/Instagram's name of the reaction (love, like, smile, ...), also
	// on an unreact, which names the reaction taken back.
	Name string `json:"name,omitempty"`
}

// Order is a WhatsApp order message: the products a customer put in a cart from the
// business's catalog and sent.
type Order struct {
	CatalogID string      `json:"catalogID,omitempty"`
	Items     []OrderItem `json:"items,omitempty"`
}

// OrderItem is one product line of an order.
type OrderItem struct {
	ProductRetailerID string  `json:"productRetailerID,omitempty"`
	Quantity          int     `json:"quantity,omitempty"`
	ItemPrice         float64 `json:"itemPrice,omitempty"`
	Currency          string  `json:"currency,omitempty"`
}

// Location shared by the user.
type Location struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
	Name      string  `json:"name,omitempty"`
	Address   string  `json:"address,omitempty"`
	URL       string  `json:"url,omitempty"`
}

// Reply is the user's choice among options the business offered: interactive button or
// list replies, template quick-reply buttons, Messenger postbacks and quick replies.
type Reply struct {
	Kind        string `json:"kind"` // button_reply, list_reply, button, postback, quick_reply
	ID          string `json:"id,omitempty"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
}

// Error as Meta reports it on messages, statuses and change values.
type Error struct {
	Code    int    `json:"code"`
	Title   string `json:"title,omitempty"`
	Message string `json:"message,omitempty"`
	Details string `json:"details,omitempty"`
}

// Status is a delivery state of an outbound message.
type Status struct {
	Platform   Platform  `json:"platform"`
	Channel    string    `json:"channel"`
	MessageID  string    `json:"messageID"`
	Subject    string    `json:"subject"`
	SubjectAlt string    `json:"subjectAlt,omitempty"`
	State      string    `json:"state"`
	Timestamp  time.Time `json:"timestamp,omitzero"`
	Errors     []Error   `json:"errors,omitempty"`
}

// Receipt is a Messenger/Instagram watermark: every outbound message to Subject sent at or
// before Watermark has reached State (delivered or read).
type Receipt struct {
	Platform  Platform  `json:"platform"`
	Channel   string    `json:"channel"`
	Subject   string    `json:"subject"`
	State     string    `json:"state"`
	Watermark time.Time `json:"watermark"`
}

// File is a reference to media attached to a message. Fetching the bytes is a later step;
// NoFetch marks media whose bytes must never be stored (Instagram story mentions).
type File struct {
	Platform   Platform `json:"platform"`
	Channel    string   `json:"channel"`
	MessageID  string   `json:"messageID"`
	Index      int      `json:"index"`
	Subject    string   `json:"subject"`
	SubjectAlt string   `json:"subjectAlt,omitempty"`
	// Kind is the kind of media (image, video, audio, document, sticker, file, ...). It is
	// exported as "mediaKind": an export record's "kind" names the record kind.
	Kind     string `json:"mediaKind"`
	MediaID  string `json:"mediaID,omitempty"`
	URL      string `json:"url,omitempty"`
	MIMEType string `json:"mimeType,omitempty"`
	SHA256   string `json:"sha256,omitempty"`
	Caption  string `json:"caption,omitempty"`
	Filename string `json:"filename,omitempty"`
	Voice    bool   `json:"voice,omitempty"`
	Animated bool   `json:"animated,omitempty"`
	NoFetch  bool   `json:"noFetch,omitempty"`
	// StickerID is Messenger's id of a sticker (the thumbs-up is one), which Meta sends
	// as an image attachment carrying payload.sticker_id.
	StickerID string `json:"stickerID,omitempty"`
}

// Deletion removes a stored message (Instagram unsend, WhatsApp revoke) and keeps a
// tombstone so that a late redelivery of the original is not stored again.
type Deletion struct {
	Platform  Platform  `json:"platform"`
	Channel   string    `json:"channel"`
	MessageID string    `json:"messageID"`
	Timestamp time.Time `json:"timestamp,omitzero"`
}

// Identity change types (WhatsApp system messages).
const (
	// IdentityChangedNumber: the user moved to a new phone number (system.wa_id).
	IdentityChangedNumber = "user_changed_number"
	// IdentityChangedUserID: the user's business-scoped user id was regenerated, which
	// happens when they change phone number (system.user_id, and system.wa_id when Meta
	// may share the number).
	IdentityChangedUserID = "user_changed_user_id"
)

// IdentityChange records that one end user, known by the Old identifiers, is now known by
// the New ones: WhatsApp announces a phone number change (and the business-scoped user id
// regenerated with it) with a system message. The store keeps it so that erasure and
// export by any of the identifiers reach the records filed under all of them.
type IdentityChange struct {
	Platform Platform `json:"platform"`
	Channel  string   `json:"channel"`
	// MessageID is the id of the system message that announced the change: redeliveries
	// of it are absorbed by it.
	MessageID string `json:"messageID"`
	// Type is user_changed_number or user_changed_user_id.
	Type      string `json:"type"`
	OldWaID   string `json:"oldWaID,omitempty"`
	OldUserID string `json:"oldUserID,omitempty"`
	NewWaID   string `json:"newWaID,omitempty"`
	NewUserID string `json:"newUserID,omitempty"`
	// NewParentUserID is kept for the record; parent business-scoped ids are not matched
	// by erasure or export (as for contacts).
	NewParentUserID string    `json:"newParentUserID,omitempty"`
	Timestamp       time.Time `json:"timestamp,omitzero"`
}

// Identifiers returns the change's non-empty old and new identifiers (wa_id and
// business-scoped user id), old first.
func (c *IdentityChange) Identifiers() []string {
	var ids []string
	for _, id := range []string{c.OldWaID, c.OldUserID, c.NewWaID, c.NewUserID} {
		if id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}
