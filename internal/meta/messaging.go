package meta

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Messenger and Instagram DM messaging item (meta-webhooks.md §3.3, §3.4).
type fbMessaging struct {
	Sender struct {
		ID      flexString `json:"id"`
		UserRef string     `json:"user_ref"`
	} `json:"sender"`
	Recipient struct {
		ID flexString `json:"id"`
	} `json:"recipient"`
	Timestamp flexTime   `json:"timestamp"`
	Message   *fbMessage `json:"message"`
	Postback  *struct {
		Mid     string `json:"mid"`
		Title   string `json:"title"`
		Payload string `json:"payload"`
	} `json:"postback"`
	Delivery *struct {
		Mids      []string `json:"mids"`
		Watermark flexTime `json:"watermark"`
	} `json:"delivery"`
	Read *struct {
		Watermark flexTime `json:"watermark"`
		Mid       string   `json:"mid"`
	} `json:"read"`
	Reaction json.RawMessage `json:"reaction"`
	Referral json.RawMessage `json:"referral"`
	Optin    json.RawMessage `json:"optin"`
}

type fbMessage struct {
	Mid           string `json:"mid"`
	Text          string `json:"text"`
	IsEcho        bool   `json:"is_echo"`
	IsDeleted     bool   `json:"is_deleted"`
	IsUnsupported bool   `json:"is_unsupported"`
	QuickReply    *struct {
		Payload string `json:"payload"`
	} `json:"quick_reply"`
	ReplyTo *struct {
		Mid   string `json:"mid"`
		Story *struct {
			ID  flexString `json:"id"`
			URL string     `json:"url"`
		} `json:"story"`
	} `json:"reply_to"`
	Attachments []struct {
		Type    string `json:"type"`
		Payload *struct {
			URL string `json:"url"`
		} `json:"payload"`
	} `json:"attachments"`
}

func parseMessaging(platform Platform, raw json.RawMessage, entryTime time.Time, out *Parsed) error {
	var m fbMessaging
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("messaging item: %w", err)
	}
	ts := firstTime(m.Timestamp.Time, entryTime)
	user := string(m.Sender.ID) // for everything the user does
	b := &out.Batch
	addContact := func(subject string) {
		b.Contacts = append(b.Contacts, Contact{Platform: platform, Subject: subject})
	}
	switch {
	case m.Message != nil && m.Message.IsDeleted:
		if m.Message.Mid == "" {
			return errors.New("deletion without mid")
		}
		b.Deletions = append(b.Deletions, Deletion{Platform: platform, MessageID: m.Message.Mid, Timestamp: ts})
	case m.Message != nil:
		msg := m.Message
		dir := Inbound
		if msg.IsEcho {
			// Echoes: sender is the business, recipient the user.
			dir, user = Outbound, string(m.Recipient.ID)
		}
		if msg.Mid == "" || user == "" {
			return errors.New("message without mid or user id")
		}
		rec := Message{
			Platform: platform, ID: msg.Mid, Subject: user, Direction: dir, Type: "text",
			Text: msg.Text, Timestamp: ts, Raw: compact(raw),
		}
		if msg.QuickReply != nil {
			rec.Reply = &Reply{Kind: "quick_reply", ID: msg.QuickReply.Payload}
		}
		if msg.ReplyTo != nil {
			rec.ReplyTo = msg.ReplyTo.Mid
			if msg.ReplyTo.Story != nil {
				rec.Type, rec.ReplyTo = "story_reply", string(msg.ReplyTo.Story.ID)
			}
		}
		if msg.IsUnsupported {
			rec.Type = "unsupported"
		}
		for i, a := range msg.Attachments {
			if i == 0 && msg.Text == "" {
				rec.Type = attachmentType(a.Type)
			}
			f := File{Platform: platform, MessageID: msg.Mid, Index: i, Subject: user, Kind: attachmentType(a.Type)}
			if a.Payload != nil {
				f.URL = a.Payload.URL
			}
			// Story mentions may be rendered from their URL but never stored (IG-STORY).
			f.NoFetch = a.Type == "story_mention" || a.Type == "ephemeral"
			b.Files = append(b.Files, f)
		}
		addContact(user)
		b.Messages = append(b.Messages, rec)
	case m.Postback != nil:
		if user == "" {
			return errors.New("postback without sender id")
		}
		id := m.Postback.Mid
		if id == "" {
			// Older postbacks have no mid: derive a stable one so redeliveries still dedupe.
			sum := sha256.Sum256([]byte(user + "\x00" + ts.String() + "\x00" + m.Postback.Payload))
			id = "postback:" + hex.EncodeToString(sum[:12])
		}
		addContact(user)
		b.Messages = append(b.Messages, Message{
			Platform: platform, ID: id, Subject: user, Direction: Inbound, Type: "postback",
			Text: m.Postback.Title, Timestamp: ts, Raw: compact(raw),
			Reply: &Reply{Kind: "postback", ID: m.Postback.Payload, Title: m.Postback.Title},
		})
	case m.Delivery != nil:
		wm := firstTime(m.Delivery.Watermark.Time, ts)
		for _, mid := range m.Delivery.Mids {
			if mid == "" {
				// A status must name its message. The watermark below still covers it.
				out.Invalid = append(out.Invalid, InvalidItem{Kind: ignoredKind(platform, "delivery"), Err: errors.New("delivery receipt with an empty message id")})
				continue
			}
			b.Statuses = append(b.Statuses, Status{Platform: platform, MessageID: mid, Subject: user, State: StateDelivered, Timestamp: wm})
		}
		if !m.Delivery.Watermark.IsZero() && user != "" {
			b.Receipts = append(b.Receipts, Receipt{Platform: platform, Subject: user, State: StateDelivered, Watermark: wm})
		}
	case m.Read != nil:
		if m.Read.Mid != "" { // Instagram messaging_seen names the message
			b.Statuses = append(b.Statuses, Status{Platform: platform, MessageID: m.Read.Mid, Subject: user, State: StateRead, Timestamp: ts})
		}
		if !m.Read.Watermark.IsZero() && user != "" {
			b.Receipts = append(b.Receipts, Receipt{Platform: platform, Subject: user, State: StateRead, Watermark: m.Read.Watermark.Time})
		}
	case m.Reaction != nil:
		out.Ignored = append(out.Ignored, ignoredKind(platform, "reaction"))
	case m.Referral != nil:
		out.Ignored = append(out.Ignored, ignoredKind(platform, "referral"))
	case m.Optin != nil:
		out.Ignored = append(out.Ignored, ignoredKind(platform, "optin"))
	default:
		out.Ignored = append(out.Ignored, ignoredKind(platform, "other"))
	}
	return nil
}

func attachmentType(t string) string {
	t = strings.ToLower(t)
	if w := boundedWord(t); w != "other" {
		return w
	}
	return "attachment"
}
