package meta

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// WhatsApp Cloud API change value for field "messages" (meta-webhooks.md §3.2).
type waValue struct {
	Metadata struct {
		PhoneNumberID flexString `json:"phone_number_id"`
	} `json:"metadata"`
	// Items stay raw and are decoded one by one, so that a malformed item (a status with
	// a bad timestamp) is left out alone rather than failing the decoding of the change.
	Contacts []json.RawMessage `json:"contacts"`
	Messages []json.RawMessage `json:"messages"`
	Statuses []json.RawMessage `json:"statuses"`
	Errors   []json.RawMessage `json:"errors"` // only counted
}

type waContact struct {
	Profile struct {
		Name     string `json:"name"`
		Username string `json:"username"`
	} `json:"profile"`
	WaID         flexString `json:"wa_id"`
	UserID       string     `json:"user_id"`
	ParentUserID string     `json:"parent_user_id"`
}

type waError struct {
	Code      int    `json:"code"`
	Title     string `json:"title"`
	Message   string `json:"message"`
	ErrorData struct {
		Details string `json:"details"`
	} `json:"error_data"`
}

type waMedia struct {
	ID       flexString `json:"id"`
	MIMEType string     `json:"mime_type"`
	SHA256   string     `json:"sha256"`
	Caption  string     `json:"caption"`
	Filename string     `json:"filename"`
	URL      string     `json:"url"`
	Voice    bool       `json:"voice"`
	Animated bool       `json:"animated"`
}

type waMessage struct {
	From       flexString  `json:"from"`
	FromUserID string      `json:"from_user_id"`
	ID         string      `json:"id"`
	Timestamp  flexTime    `json:"timestamp"`
	Type       string      `json:"type"`
	GroupID    string      `json:"group_id"`
	Referral   *waReferral `json:"referral"`
	Order      *waOrder    `json:"order"`
	Context    *struct {
		ID                  string `json:"id"`
		Forwarded           bool   `json:"forwarded"`
		FrequentlyForwarded bool   `json:"frequently_forwarded"`
	} `json:"context"`
	Text *struct {
		Body string `json:"body"`
	} `json:"text"`
	Image    *waMedia `json:"image"`
	Video    *waMedia `json:"video"`
	Audio    *waMedia `json:"audio"`
	Document *waMedia `json:"document"`
	Sticker  *waMedia `json:"sticker"`
	Voice    *waMedia `json:"voice"` // the older voice note type
	Location *struct {
		Latitude  float64 `json:"latitude"`
		Longitude float64 `json:"longitude"`
		Name      string  `json:"name"`
		Address   string  `json:"address"`
		URL       string  `json:"url"`
	} `json:"location"`
	Contacts    []json.RawMessage `json:"contacts"`
	Interactive *struct {
		Type        string `json:"type"`
		ButtonReply *struct {
			ID    string `json:"id"`
			Title string `json:"title"`
		} `json:"button_reply"`
		ListReply *struct {
			ID          string `json:"id"`
			Title       string `json:"title"`
			Description string `json:"description"`
		} `json:"list_reply"`
	} `json:"interactive"`
	Button *struct {
		Payload string `json:"payload"`
		Text    string `json:"text"`
	} `json:"button"`
	Reaction *struct {
		MessageID string `json:"message_id"`
		Emoji     string `json:"emoji"`
	} `json:"reaction"`
	Revoke *struct {
		OriginalMessageID string `json:"original_message_id"`
	} `json:"revoke"`
	System *waSystem `json:"system"`
	Errors []waError `json:"errors"`
}

// waReferral is the referral object of a message that came from a Click-to-WhatsApp
// ad or post (meta-webhooks.md §3.2).
type waReferral struct {
	SourceURL      string     `json:"source_url"`
	SourceID       flexString `json:"source_id"`
	SourceType     string     `json:"source_type"`
	Body           string     `json:"body"`
	Headline       string     `json:"headline"`
	MediaType      string     `json:"media_type"`
	ImageURL       string     `json:"image_url"`
	VideoURL       string     `json:"video_url"`
	ThumbnailURL   string     `json:"thumbnail_url"`
	CtwaClid       string     `json:"ctwa_clid"`
	WelcomeMessage *struct {
		Text string `json:"text"`
	} `json:"welcome_message"`
}

// waOrder is an order message: products from the business's catalog.
type waOrder struct {
	CatalogID    flexString `json:"catalog_id"`
	Text         string     `json:"text"`
	ProductItems []struct {
		ProductRetailerID flexString `json:"product_retailer_id"`
		Quantity          flexNumber `json:"quantity"`
		ItemPrice         flexNumber `json:"item_price"`
		Currency          string     `json:"currency"`
	} `json:"product_items"`
}

// waSystem is a system message's object (docs/identity.md): the
// new identifiers of a user who changed phone number. The old ones are the message's
// sender (from, from_user_id).
type waSystem struct {
	Body         string     `json:"body"`
	WaID         flexString `json:"wa_id"`
	UserID       string     `json:"user_id"`
	ParentUserID string     `json:"parent_user_id"`
	Type         string     `json:"type"`
}

type waStatus struct {
	ID              string     `json:"id"`
	Status          string     `json:"status"`
	Timestamp       flexTime   `json:"timestamp"`
	RecipientID     flexString `json:"recipient_id"`
	RecipientUserID string     `json:"recipient_user_id"`
	Errors          []waError  `json:"errors"`
}

// waSubject returns (Subject, SubjectAlt): the business-scoped user id when present (a
// user with a username may have no phone number at all), with wa_id as the alternative.
func waSubject(waID, userID string) (string, string) {
	if userID != "" {
		return userID, waID
	}
	return waID, ""
}

func convErrors(in []waError) []Error {
	if len(in) == 0 {
		return nil
	}
	out := make([]Error, len(in))
	for i, e := range in {
		out[i] = Error{Code: e.Code, Title: e.Title, Message: e.Message, Details: e.ErrorData.Details}
	}
	return out
}

// parseWhatsApp normalizes a "messages" change item by item. Meta sends the change once
// for all its items, so failing it whole for one bad item would acknowledge, and so lose
// for good, its valid siblings. An item is invalid, and left out alone (reported in
// out.Invalid), when no record the store accepts can be made of it:
//   - a contact that does not decode or has neither wa_id nor user_id;
//   - a message that does not decode (a field of the wrong type, a timestamp that is not
//     a unix time), has no id or no sender (from, from_user_id), or lacks the object its
//     type names (type image without image, a revoke without original_message_id, a
//     system message without system), or announces an identity change (system type
//     user_changed_number or user_changed_user_id) without a new wa_id or user_id;
//   - a status that does not decode (a bad timestamp too) or has no message id.
//
// A missing timestamp is not invalid: the entry's time stands in, as it does everywhere.
// A malformed one is not guessed at: the record would be misplaced in its conversation.
func parseWhatsApp(v *waValue, entryTime time.Time, out *Parsed) {
	b := &out.Batch
	invalid := func(kind string, err error) {
		out.Invalid = append(out.Invalid, InvalidItem{Kind: kind, Err: err})
	}
	for i, raw := range v.Contacts {
		var c waContact
		if err := json.Unmarshal(raw, &c); err != nil {
			invalid("whatsapp.contact", fmt.Errorf("whatsapp contact %d: decode: %w", i, err))
			continue
		}
		subj, _ := waSubject(string(c.WaID), c.UserID)
		if subj == "" {
			invalid("whatsapp.contact", fmt.Errorf("whatsapp contact %d: no wa_id or user_id", i))
			continue
		}
		b.Contacts = append(b.Contacts, Contact{
			Platform: WhatsApp, Subject: subj, WaID: string(c.WaID), UserID: c.UserID,
			ParentUserID: c.ParentUserID, Username: c.Profile.Username, Name: c.Profile.Name,
		})
	}
	for i, raw := range v.Messages {
		if err := parseWAMessage(raw, entryTime, out); err != nil {
			invalid("whatsapp.message", fmt.Errorf("whatsapp message %d: %w", i, err))
		}
	}
	for i, raw := range v.Statuses {
		var s waStatus
		if err := json.Unmarshal(raw, &s); err != nil {
			invalid("whatsapp.status", fmt.Errorf("whatsapp status %d: decode: %w", i, err))
			continue
		}
		if s.ID == "" {
			invalid("whatsapp.status", fmt.Errorf("whatsapp status %d: no message id", i))
			continue
		}
		if StateRank(s.Status) == 0 {
			out.Ignored = append(out.Ignored, "whatsapp.status."+boundedWord(s.Status))
			continue
		}
		subj, alt := waSubject(string(s.RecipientID), s.RecipientUserID)
		b.Statuses = append(b.Statuses, Status{
			Platform: WhatsApp, MessageID: s.ID, Subject: subj, SubjectAlt: alt, State: s.Status,
			Timestamp: firstTime(s.Timestamp.Time, entryTime), Errors: convErrors(s.Errors),
		})
	}
	if len(v.Errors) > 0 {
		// Account-level errors carry no end-user data; a later issue turns them into alerts.
		out.Ignored = append(out.Ignored, "whatsapp.errors")
	}
}

// parseWAMessage appends the records of one message, or nothing at all when it fails:
// the caller then leaves the message out whole.
func parseWAMessage(raw json.RawMessage, entryTime time.Time, out *Parsed) error {
	var m waMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if m.ID == "" {
		return errors.New("no message id")
	}
	subj, alt := waSubject(string(m.From), m.FromUserID)
	if subj == "" {
		return errors.New("no sender")
	}
	msg := Message{
		Platform: WhatsApp, ID: m.ID, Subject: subj, SubjectAlt: alt, Direction: Inbound,
		Type: m.Type, Timestamp: firstTime(m.Timestamp.Time, entryTime), Errors: convErrors(m.Errors),
		GroupID: m.GroupID,
	}
	if m.Context != nil {
		msg.ReplyTo = m.Context.ID
		msg.Forwarded = m.Context.Forwarded || m.Context.FrequentlyForwarded
	}
	var file *File
	media := func(md *waMedia) error {
		if md == nil {
			return fmt.Errorf("type %s without its object", boundedWord(m.Type))
		}
		msg.Text = md.Caption
		file = &File{
			Platform: WhatsApp, MessageID: m.ID, Subject: subj, SubjectAlt: alt, Kind: m.Type,
			MediaID: string(md.ID), URL: md.URL, MIMEType: md.MIMEType, SHA256: md.SHA256,
			Caption: md.Caption, Filename: md.Filename, Voice: md.Voice, Animated: md.Animated,
		}
		return nil
	}
	var err error
	switch m.Type {
	case "text":
		if m.Text == nil {
			return errors.New("type text without text")
		}
		msg.Text = m.Text.Body
	case "image":
		err = media(m.Image)
	case "video":
		err = media(m.Video)
	case "audio":
		err = media(m.Audio)
	case "document":
		err = media(m.Document)
	case "sticker":
		err = media(m.Sticker)
	case "voice":
		// The older voice note type: stored as the audio message with voice set that
		// Meta sends today, so that a CRM reads one kind of voice note.
		if err = media(m.Voice); err == nil {
			msg.Type, file.Kind, file.Voice = "audio", "audio", true
		}
	case "order":
		if m.Order == nil {
			return errors.New("type order without order")
		}
		msg.Text = m.Order.Text
		msg.Order = &Order{CatalogID: string(m.Order.CatalogID)}
		for _, it := range m.Order.ProductItems {
			msg.Order.Items = append(msg.Order.Items, OrderItem{
				ProductRetailerID: string(it.ProductRetailerID), Quantity: int(it.Quantity),
				ItemPrice: float64(it.ItemPrice), Currency: it.Currency,
			})
		}
	case "location":
		if m.Location == nil {
			return errors.New("type location without location")
		}
		l := *m.Location
		msg.Location = &Location{Latitude: l.Latitude, Longitude: l.Longitude, Name: l.Name, Address: l.Address, URL: l.URL}
	case "contacts":
		// Shared contact cards stay in Raw: they are the sender's address book, not leads.
	case "interactive":
		switch {
		case m.Interactive != nil && m.Interactive.ButtonReply != nil:
			r := m.Interactive.ButtonReply
			msg.Reply = &Reply{Kind: "button_reply", ID: r.ID, Title: r.Title}
			msg.Text = r.Title
		case m.Interactive != nil && m.Interactive.ListReply != nil:
			r := m.Interactive.ListReply
			msg.Reply = &Reply{Kind: "list_reply", ID: r.ID, Title: r.Title, Description: r.Description}
			msg.Text = r.Title
		default:
			// Flows (nfm_reply) and newer interactive kinds: kept whole in Raw.
		}
	case "button":
		if m.Button == nil {
			return errors.New("type button without button")
		}
		msg.Reply = &Reply{Kind: "button", ID: m.Button.Payload, Title: m.Button.Text}
		msg.Text = m.Button.Text
	case "reaction":
		if m.Reaction == nil {
			return errors.New("type reaction without reaction")
		}
		msg.Reaction = &Reaction{MessageID: m.Reaction.MessageID, Emoji: m.Reaction.Emoji}
	case "unsupported":
		// Errors already copied; Raw keeps unsupported.type (e.g. an edit).
	case "system":
		if m.System == nil {
			return errors.New("type system without system")
		}
		msg.Text = m.System.Body
		change, err := waIdentityChange(&m, msg.Timestamp)
		if err != nil {
			return err
		}
		if change != nil {
			out.Batch.Identities = append(out.Batch.Identities, *change)
		}
	case "revoke":
		if m.Revoke == nil || m.Revoke.OriginalMessageID == "" {
			return errors.New("revoke without original_message_id")
		}
		out.Batch.Deletions = append(out.Batch.Deletions, Deletion{
			Platform: WhatsApp, MessageID: m.Revoke.OriginalMessageID, Timestamp: msg.Timestamp,
		})
		return nil
	default:
		// A type this worker does not know (an edit, a type Meta adds later): a message
		// from a customer all the same, kept whole in Raw rather than dropped.
		msg.Type = "unknown"
	}
	if err != nil {
		return err
	}
	if file != nil {
		out.Batch.Files = append(out.Batch.Files, *file)
	}
	msg.Raw = compact(raw)
	out.Batch.Messages = append(out.Batch.Messages, msg)
	if m.Referral != nil {
		out.Batch.Leads = append(out.Batch.Leads, waReferralLead(&msg, m.Referral))
	}
	return nil
}

// waReferralLead is the lead a Click-to-WhatsApp message carries: keyed by the message's
// own id, so that a redelivery stores it once.
func waReferralLead(msg *Message, r *waReferral) Lead {
	l := Lead{
		Platform: WhatsApp, ID: msg.ID, Subject: msg.Subject, SubjectAlt: msg.SubjectAlt,
		Event: LeadReferral, Source: SourceClickToWhatsApp, MetaSource: r.SourceType, MessageID: msg.ID,
		Timestamp: msg.Timestamp, SourceURL: r.SourceURL, SourceID: string(r.SourceID), SourceType: r.SourceType,
		Headline: r.Headline, Body: r.Body, MediaType: r.MediaType, ImageURL: r.ImageURL, VideoURL: r.VideoURL,
		ThumbnailURL: r.ThumbnailURL, CtwaClid: r.CtwaClid,
	}
	if r.WelcomeMessage != nil {
		l.WelcomeMessage = r.WelcomeMessage.Text
	}
	return l
}

// waIdentityChange returns the identity change a system message announces, or nil for a
// system message of another type (kept as a message only). A change that names no new
// identifier cannot link anything and makes the message invalid.
func waIdentityChange(m *waMessage, ts time.Time) (*IdentityChange, error) {
	sys := m.System
	switch sys.Type {
	case IdentityChangedNumber, IdentityChangedUserID:
	default:
		return nil, nil
	}
	c := &IdentityChange{
		Platform: WhatsApp, MessageID: m.ID, Type: sys.Type,
		OldWaID: string(m.From), OldUserID: m.FromUserID,
		NewWaID: string(sys.WaID), NewUserID: sys.UserID, NewParentUserID: sys.ParentUserID,
		Timestamp: ts,
	}
	if c.NewWaID == "" && c.NewUserID == "" {
		return nil, fmt.Errorf("system %s without wa_id or user_id", sys.Type)
	}
	return c, nil
}

// boundedWord keeps metric labels built from payload words small and safe.
func boundedWord(s string) string {
	if s == "" || len(s) > 32 {
		return "other"
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && c != '_' {
			return "other"
		}
	}
	return s
}
