package meta

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// Lead events: what kind of touch a Lead records.
const (
	// LeadReferral: the customer came through a referral (Messenger/Instagram referral,
	// a postback or message carrying one, a WhatsApp message with a referral object).
	LeadReferral = "referral"
	// LeadOptin: the customer opted in (Send to Messenger / checkbox plugin, recurring or
	// one-time notification request).
	LeadOptin = "optin"
)

// Lead sources, the normalized answer to "where did this customer come from".
const (
	SourceAd              = "ad"                // a Messenger/Instagram ad (Click-to-Messenger, Click-to-Instagram)
	SourceLink            = "link"              // an m.me / ig.me link, usually with a ref
	SourcePlugin          = "plugin"            // the customer chat plugin, Send to Messenger or checkbox plugin
	SourceClickToWhatsApp = "click_to_whatsapp" // a Click-to-WhatsApp ad or post
	SourceNotifications   = "notifications"     // a recurring or one-time notification opt-in
	SourceOther           = "other"             // a source Meta names that none of the above is
)

// Lead is one touch that tells where a customer came from: a referral or an opt-in, with
// its source, the ids Meta gave for it and its time. A contact has any number of them;
// the first and the last by Timestamp are the first and last touch.
type Lead struct {
	Platform Platform `json:"platform"`
	Channel  string   `json:"channel"`
	// ID is unique per platform: a WhatsApp referral's message id, the Messenger or
	// Instagram message id (mid) a referral came with, else an id derived from every
	// field of the event (GeneratedID).
	ID         string `json:"id"`
	Subject    string `json:"subject"`
	SubjectAlt string `json:"subjectAlt,omitempty"`
	// Event is referral or optin; Source is one of the Source constants.
	Event  string `json:"event"`
	Source string `json:"source"`
	// MetaSource is Meta's own word for the source (referral.source: ADS, SHORTLINK,
	// CUSTOMER_CHAT_PLUGIN, ...; WhatsApp referral.source_type: ad, post).
	MetaSource string `json:"metaSource,omitempty"`
	// Type is Meta's referral.type (OPEN_THREAD) or optin.type (notification_messages,
	// one_time_notif_req).
	Type string `json:"type,omitempty"`
	// MessageID is the message or postback the touch came with, when it came with one.
	MessageID string    `json:"messageID,omitempty"`
	Timestamp time.Time `json:"timestamp,omitzero"`

	// Messenger/Instagram referral and opt-in fields.
	Ref        string `json:"ref,omitempty"`
	AdID       string `json:"adID,omitempty"`
	RefererURI string `json:"refererURI,omitempty"`
	UserRef    string `json:"userRef,omitempty"`
	AdTitle    string `json:"adTitle,omitempty"`
	PhotoURL   string `json:"photoURL,omitempty"`
	PostID     string `json:"postID,omitempty"`
	ProductID  string `json:"productID,omitempty"`

	// WhatsApp Click-to-WhatsApp fields (referral object of a message).
	SourceURL      string `json:"sourceURL,omitempty"`
	SourceID       string `json:"sourceID,omitempty"`
	SourceType     string `json:"sourceType,omitempty"`
	Headline       string `json:"headline,omitempty"`
	Body           string `json:"body,omitempty"`
	MediaType      string `json:"mediaType,omitempty"`
	ImageURL       string `json:"imageURL,omitempty"`
	VideoURL       string `json:"videoURL,omitempty"`
	ThumbnailURL   string `json:"thumbnailURL,omitempty"`
	CtwaClid       string `json:"ctwaClid,omitempty"`
	WelcomeMessage string `json:"welcomeMessage,omitempty"`

	// Opt-in fields (notification requests).
	Payload               string    `json:"payload,omitempty"`
	Title                 string    `json:"title,omitempty"`
	NotificationFrequency string    `json:"notificationFrequency,omitempty"`
	NotificationTimezone  string    `json:"notificationTimezone,omitempty"`
	NotificationStatus    string    `json:"notificationStatus,omitempty"` // STOP_NOTIFICATIONS, RESUME_NOTIFICATIONS
	TokenStatus           string    `json:"tokenStatus,omitempty"`        // user_token_status: NOT_REFRESHED, REFRESHED
	TokenExpiresAt        time.Time `json:"tokenExpiresAt,omitzero"`
	// HasToken says that Meta handed over a notification token with this opt-in. The
	// token itself is never part of the document (see Token).
	HasToken bool `json:"hasToken,omitempty"`
	// Token is the recurring (notification_messages_token) or one-time
	// (one_time_notif_token) notification token: a credential to message the person.
	// It is never encoded with the record: backends keep it in a column of its own that
	// no export reads, and it prints as [redacted].
	Token Secret `json:"-"`
}

// Secret is a credential Meta hands over. It never prints, logs or encodes its value:
// use string(s) where the value is really needed (the store's own column).
type Secret string

const redacted = "[redacted]"

// String, GoString, Format, LogValue and MarshalJSON keep the value out of every
// printer, logger and encoder that might be handed a record.
func (s Secret) String() string               { return s.mask() }
func (s Secret) GoString() string             { return `"` + s.mask() + `"` }
func (s Secret) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(s.mask())) }
func (s Secret) LogValue() slog.Value         { return slog.StringValue(s.mask()) }
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.mask()) }
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.mask()), nil }

// mask is what a Secret shows: nothing for no token, the same placeholder for any token.
func (s Secret) mask() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GeneratedID derives a stable id for an event Meta gives no id for (a postback without
// mid, a referral, an opt-in, a Messenger reaction) from the whole of its messaging item:
// two events differing in any field (a title, a referral, a ref) get different ids,
// while a redelivery of the same item gets the same one. prefix names the event kind.
func GeneratedID(prefix string, platform Platform, item json.RawMessage) string {
	c := compact(item)
	if c == nil {
		c = item
	}
	h := sha256.New()
	h.Write([]byte(platform))
	h.Write([]byte{0})
	h.Write(c)
	return prefix + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}
