package meta

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Messenger and Instagram DM messaging item (meta-webhooks.md §3.3, §3.4; the shapes
// the reference leaves out are in docs/meta-events.md).
type fbMessaging struct {
	Sender struct {
		ID      flexString `json:"id"`
		UserRef string     `json:"user_ref"` // customer chat plugin guests, checkbox opt-ins
	} `json:"sender"`
	Recipient struct {
		ID flexString `json:"id"`
	} `json:"recipient"`
	Timestamp flexTime   `json:"timestamp"`
	Message   *fbMessage `json:"message"`
	Postback  *struct {
		Mid      string      `json:"mid"`
		Title    string      `json:"title"`
		Payload  string      `json:"payload"`
		Referral *fbReferral `json:"referral"`
	} `json:"postback"`
	Delivery *struct {
		Mids      []string `json:"mids"`
		Watermark flexTime `json:"watermark"`
	} `json:"delivery"`
	Read *struct {
		Watermark flexTime `json:"watermark"`
		Mid       string   `json:"mid"`
	} `json:"read"`
	Reaction *struct {
		Mid      string `json:"mid"`
		Action   string `json:"action"`
		Reaction string `json:"reaction"`
		Emoji    string `json:"emoji"`
	} `json:"reaction"`
	Referral *fbReferral `json:"referral"`
	Optin    *fbOptin    `json:"optin"`
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
			URL       string     `json:"url"`
			StickerID flexString `json:"sticker_id"`
		} `json:"payload"`
	} `json:"attachments"`
	Referral *fbReferral `json:"referral"`
}

// fbReferral is a Messenger/Instagram referral: on its own (messaging_referrals), in a
// postback (Get Started from an ad or link) or in a message (ads, Shops).
type fbReferral struct {
	Ref            string     `json:"ref"`
	AdID           flexString `json:"ad_id"`
	Source         string     `json:"source"`
	Type           string     `json:"type"`
	RefererURI     string     `json:"referer_uri"`
	AdsContextData *struct {
		AdTitle   string     `json:"ad_title"`
		PhotoURL  string     `json:"photo_url"`
		VideoURL  string     `json:"video_url"`
		PostID    flexString `json:"post_id"`
		ProductID flexString `json:"product_id"`
	} `json:"ads_context_data"`
}

// fbOptin is a Messenger opt-in: the Send to Messenger or checkbox plugin (ref,
// user_ref), or a recurring (notification_messages) or one-time (one_time_notif_req)
// notification request, which hands over a token.
type fbOptin struct {
	Type            string   `json:"type"`
	Ref             string   `json:"ref"`
	UserRef         string   `json:"user_ref"`
	Payload         string   `json:"payload"`
	Title           string   `json:"title"`
	Token           string   `json:"notification_messages_token"`
	OneTimeToken    string   `json:"one_time_notif_token"`
	Frequency       string   `json:"notification_messages_frequency"`
	Timezone        string   `json:"notification_messages_timezone"`
	Status          string   `json:"notification_messages_status"`
	TokenExpiry     flexTime `json:"token_expiry_timestamp"`
	UserTokenStatus string   `json:"user_token_status"`
}

func parseMessaging(platform Platform, raw json.RawMessage, entryTime time.Time, out *Parsed) error {
	var m fbMessaging
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("messaging item: %w", err)
	}
	ts := firstTime(m.Timestamp.Time, entryTime)
	user := string(m.Sender.ID) // for everything the user does
	if user == "" {
		user = m.Sender.UserRef // a chat plugin guest or a checkbox opt-in: no PSID yet
	}
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
		if msg.Text == "" {
			// Not text: an attachment below names it; anything else (an echo of a
			// template without attachments, say) is kept whole in Raw as "unknown"
			// rather than read as an empty text.
			rec.Type = "unknown"
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
			f := File{Platform: platform, MessageID: msg.Mid, Index: i, Subject: user, Kind: attachmentType(a.Type)}
			if a.Payload != nil {
				f.URL, f.StickerID = a.Payload.URL, string(a.Payload.StickerID)
			}
			if i == 0 && msg.Text == "" && !msg.IsUnsupported {
				rec.Type = f.Kind
				if f.StickerID != "" {
					rec.Type = "sticker" // Meta sends stickers as images with a sticker_id
				}
			}
			// Story mentions may be rendered from their URL but never stored (IG-STORY).
			f.NoFetch = a.Type == "story_mention" || a.Type == "ephemeral"
			b.Files = append(b.Files, f)
		}
		addContact(user)
		b.Messages = append(b.Messages, rec)
		if msg.Referral != nil && dir == Inbound {
			b.Leads = append(b.Leads, fbReferralLead(platform, msg.Mid, user, msg.Mid, ts, msg.Referral))
		}
	case m.Postback != nil:
		if user == "" {
			return errors.New("postback without sender id")
		}
		id := m.Postback.Mid
		if id == "" {
			// Older postbacks have no mid: derive one from the whole item, so that
			// redeliveries dedupe and two different postbacks never share one.
			id = GeneratedID("postback", platform, raw)
		}
		addContact(user)
		b.Messages = append(b.Messages, Message{
			Platform: platform, ID: id, Subject: user, Direction: Inbound, Type: "postback",
			Text: m.Postback.Title, Timestamp: ts, Raw: compact(raw),
			Reply: &Reply{Kind: "postback", ID: m.Postback.Payload, Title: m.Postback.Title},
		})
		if m.Postback.Referral != nil {
			b.Leads = append(b.Leads, fbReferralLead(platform, id, user, id, ts, m.Postback.Referral))
		}
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
		r := m.Reaction
		if r.Mid == "" || user == "" {
			return errors.New("reaction without mid or user id")
		}
		rec := Message{
			// A reaction has no id of its own: one is derived from the whole item, so a
			// react and a later unreact of the same message are two records.
			Platform: platform, ID: GeneratedID("reaction", platform, raw), Subject: user, Direction: Inbound,
			Type: "reaction", Timestamp: ts, Raw: compact(raw),
			Reaction: &Reaction{MessageID: r.Mid, Emoji: r.Emoji, Name: r.Reaction},
		}
		if r.Action == "unreact" {
			rec.Reaction.Emoji = "" // as a removed WhatsApp reaction reads
		}
		addContact(user)
		b.Messages = append(b.Messages, rec)
	case m.Referral != nil:
		if user == "" {
			return errors.New("referral without sender")
		}
		addContact(user)
		b.Leads = append(b.Leads, fbReferralLead(platform, GeneratedID("referral", platform, raw), user, "", ts, m.Referral))
	case m.Optin != nil:
		if user == "" {
			user = m.Optin.UserRef
		}
		if user == "" {
			return errors.New("opt-in without sender or user_ref")
		}
		addContact(user)
		b.Leads = append(b.Leads, fbOptinLead(platform, GeneratedID("optin", platform, raw), user, ts, m.Optin))
	default:
		out.Ignored = append(out.Ignored, ignoredKind(platform, "other"))
	}
	return nil
}

// fbSource normalizes a Messenger/Instagram referral source.
func fbSource(s string) string {
	switch strings.ToUpper(s) {
	case "ADS":
		return SourceAd
	case "SHORTLINK", "IGME", "IG_ME":
		return SourceLink
	case "CUSTOMER_CHAT_PLUGIN":
		return SourcePlugin
	}
	return SourceOther
}

func fbReferralLead(platform Platform, id, user, messageID string, ts time.Time, r *fbReferral) Lead {
	l := Lead{
		Platform: platform, ID: id, Subject: user, Event: LeadReferral, Source: fbSource(r.Source),
		MetaSource: r.Source, Type: r.Type, MessageID: messageID, Timestamp: ts,
		Ref: r.Ref, AdID: string(r.AdID), RefererURI: r.RefererURI,
	}
	if c := r.AdsContextData; c != nil {
		l.AdTitle, l.PhotoURL, l.VideoURL, l.PostID, l.ProductID = c.AdTitle, c.PhotoURL, c.VideoURL, string(c.PostID), string(c.ProductID)
	}
	return l
}

func fbOptinLead(platform Platform, id, user string, ts time.Time, o *fbOptin) Lead {
	l := Lead{
		Platform: platform, ID: id, Subject: user, Event: LeadOptin, Source: SourcePlugin, Type: o.Type, Timestamp: ts,
		Ref: o.Ref, UserRef: o.UserRef, Payload: o.Payload, Title: o.Title,
		NotificationFrequency: o.Frequency, NotificationTimezone: o.Timezone, NotificationStatus: o.Status,
		TokenStatus: o.UserTokenStatus, TokenExpiresAt: o.TokenExpiry.Time,
	}
	if o.Type != "" {
		l.Source = SourceNotifications
	}
	l.Token = Secret(o.Token)
	if l.Token == "" {
		l.Token = Secret(o.OneTimeToken)
	}
	l.HasToken = l.Token != ""
	return l
}

func attachmentType(t string) string {
	t = strings.ToLower(t)
	if w := boundedWord(t); w != "other" {
		return w
	}
	return "attachment"
}
