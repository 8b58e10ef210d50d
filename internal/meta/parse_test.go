package meta

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sec(n int64) time.Time { return time.Unix(n, 0).UTC() }
func ms(n int64) time.Time  { return time.UnixMilli(n).UTC() }

const (
	waPhone  = "123456789012345"
	fbPage   = "104857600123456"
	igAcct   = "17841400000000001"
	ana      = "15555550142"
	oliver   = "447700900123"
	outWamid = "wamid.HBgLMTU1NTU1NTAxNDIVAgARGBI5QjdFMkMxRjBBNDQ4RDNFNTcA"
	waURL    = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=%s&ext=%s&hash=ATt3xQ9kLmN0pQrStUvWxYz0Aa1Bb2Cc3Dd4Ee5Ff6"
)

func waURLFor(mid, ext string) string {
	return strings.Replace(strings.Replace(waURL, "%s", mid, 1), "%s", ext, 1)
}

func wantWAContact(name, waID string) Contact {
	return Contact{Platform: WhatsApp, Subject: waID, WaID: waID, Name: name}
}

func waMsg(id, from, typ, text string, ts int64) Message {
	return Message{Platform: WhatsApp, ID: id, Subject: from, Direction: Inbound, Type: typ, Text: text, Timestamp: sec(ts)}
}

type fixtureCase struct {
	file     string
	accounts []string // AccountID of each part, in order
	want     Parsed
}

// fixtureCases lists every fixture with the exact records it must normalize to. Raw
// fragments are checked separately (valid JSON naming the message id) and then cleared.
func fixtureCases() []fixtureCase {
	igMsg := func(id, typ, text string, dir Direction, ts int64) Message {
		return Message{Platform: Instagram, ID: id, Subject: "1123456789012345", Direction: dir, Type: typ, Text: text, Timestamp: ms(ts)}
	}
	igContact := Contact{Platform: Instagram, Subject: "1123456789012345"}
	fbContact := func(id string) Contact { return Contact{Platform: Messenger, Subject: id} }
	withReply := func(m Message, replyTo string, r *Reply) Message { m.ReplyTo, m.Reply = replyTo, r; return m }
	return []fixtureCase{
		{"instagram-comment.json", []string{igAcct}, Parsed{Batch: Batch{
			Contacts: []Contact{{Platform: Instagram, Subject: "1123456789012345", Username: "ana.souza"}},
			Messages: []Message{{Platform: Instagram, ID: "17865432109876543", Subject: "1123456789012345", Direction: Inbound, Type: "comment",
				Text: "How much is shipping?", Timestamp: sec(1781101200)}},
		}}},
		{"instagram-mention-in-comment.json", []string{igAcct}, Parsed{Ignored: []string{"instagram.mentions"}}},
		{"instagram-dashboard-test-event-changes-format.json", []string{"0"}, Parsed{Batch: Batch{
			Contacts: []Contact{{Platform: Instagram, Subject: "12334"}},
			Messages: []Message{{Platform: Instagram, ID: "random_mid", Subject: "12334", Direction: Inbound, Type: "text", Text: "random_text", Timestamp: sec(1527459824)}},
		}}},
		{"instagram-dm-text.json", []string{igAcct}, Parsed{Batch: Batch{
			Contacts: []Contact{igContact},
			Messages: []Message{igMsg("aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDE6ZmFrZS1pZy1UWFQx", "text", "Hi, is the blue dress still available in M?", Inbound, 1781100800321)},
		}}},
		{"instagram-echo.json", []string{igAcct}, Parsed{Batch: Batch{
			Contacts: []Contact{igContact},
			Messages: []Message{igMsg("aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDE6ZmFrZS1pZy1FQ0hPMQ", "text", "Yes! Size M is in stock.", Outbound, 1781101100321)},
		}}},
		{"instagram-story-mention.json", []string{igAcct}, Parsed{Batch: Batch{
			Contacts: []Contact{igContact},
			Messages: []Message{igMsg("aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDE6ZmFrZS1pZy1TVE9SWTE", "story_mention", "", Inbound, 1781100900321)},
			Files: []File{{Platform: Instagram, MessageID: "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDE6ZmFrZS1pZy1TVE9SWTE", Subject: "1123456789012345", Kind: "story_mention",
				URL: "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17900000000000001&signature=AbCdEf0123456789-_fakeSignature", NoFetch: true}},
		}}},
		{"messenger-attachment-image.json", []string{fbPage}, Parsed{Batch: Batch{
			Contacts: []Contact{fbContact("6012345678901234")},
			Messages: []Message{{Platform: Messenger, ID: "m_ZmFrZS1taWQtSU1HMQ", Subject: "6012345678901234", Direction: Inbound, Type: "image", Timestamp: ms(1781100200111)}},
			Files: []File{{Platform: Messenger, MessageID: "m_ZmFrZS1taWQtSU1HMQ", Subject: "6012345678901234", Kind: "image",
				URL: "https://scontent.xx.fbcdn.net/v/t1.15752-9/451234567_1234567890123456_1234567890123456789_n.jpg?_nc_cat=105&ccb=1-7&_nc_sid=fc17b8&_nc_ohc=AbCdEfGhIjk&_nc_ht=scontent.xx&oh=03_Q7cD1AbCdEfGhIj&oe=6A7B8C9D"}},
		}}},
		{"messenger-delivery-and-read-batch.json", []string{fbPage, fbPage}, Parsed{Batch: Batch{
			Statuses: []Status{{Platform: Messenger, MessageID: "m_ZmFrZS1taWQtRUNITzE", Subject: "6012345678901234", State: StateDelivered, Timestamp: ms(1781100300512)}},
			Receipts: []Receipt{
				{Platform: Messenger, Subject: "6012345678901234", State: StateDelivered, Watermark: ms(1781100300512)},
				{Platform: Messenger, Subject: "6012345678901234", State: StateRead, Watermark: ms(1781100300512)},
			},
		}}},
		{"messenger-echo.json", []string{fbPage}, Parsed{Batch: Batch{
			Contacts: []Contact{fbContact("6012345678901234")},
			Messages: []Message{{Platform: Messenger, ID: "m_ZmFrZS1taWQtRUNITzE", Subject: "6012345678901234", Direction: Outbound, Type: "text", Text: "Yes, we ship to Portugal in 3-5 business days.", Timestamp: ms(1781100300512)}},
		}}},
		{"messenger-postback.json", []string{fbPage}, Parsed{Batch: Batch{
			Contacts: []Contact{fbContact("6098765432109876")},
			Messages: []Message{{Platform: Messenger, ID: "m_ZmFrZS1taWQtUEIx", Subject: "6098765432109876", Direction: Inbound, Type: "postback", Text: "Get Started", Timestamp: ms(1781100400100),
				Reply: &Reply{Kind: "postback", ID: "GET_STARTED", Title: "Get Started"}}},
			Leads: []Lead{{Platform: Messenger, ID: "m_ZmFrZS1taWQtUEIx", Subject: "6098765432109876", Event: LeadReferral, Source: SourceLink,
				MetaSource: "SHORTLINK", Type: "OPEN_THREAD", MessageID: "m_ZmFrZS1taWQtUEIx", Timestamp: ms(1781100400100), Ref: "summer_campaign"}},
		}}},
		{"messenger-text.json", []string{fbPage}, Parsed{Batch: Batch{
			Contacts: []Contact{fbContact("6012345678901234")},
			Messages: []Message{{Platform: Messenger, ID: "m_ZmFrZS1taWQtVFhUMQ", Subject: "6012345678901234", Direction: Inbound, Type: "text", Text: "Hi! Do you ship to Portugal?", Timestamp: ms(1781100123001)}},
		}}},
		{"whatsapp-account-update-account-deleted.json", []string{"109876543210987"}, Parsed{Ignored: []string{"whatsapp.account_update"}}},
		{"whatsapp-account-update-partner-app-uninstalled.json", []string{"2949482700000001"}, Parsed{Ignored: []string{"whatsapp.account_update"}}},
		{"whatsapp-audio-voice.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Oliver Grant", oliver)},
			Messages: []Message{waMsg("wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQUFVRDAwMQAA==", oliver, "audio", "", 1781100150)},
			Files: []File{{Platform: WhatsApp, MessageID: "wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQUFVRDAwMQAA==", Subject: oliver, Kind: "audio", MediaID: "3012457789123456",
				URL: waURLFor("3012457789123456", "1781100150"), MIMEType: "audio/ogg; codecs=opus", SHA256: "HQXV2xgmGBm7xxd2dgPd0HcVrrLF7sDTainZQAwLad4=", Voice: true}},
		}}},
		{"whatsapp-button-template-quick-reply.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Oliver Grant", oliver)},
			Messages: []Message{withReply(waMsg("wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQUJUTjAwMQAA==", oliver, "button", "Stop promotions", 1781100260), outWamid,
				&Reply{Kind: "button", ID: "STOP_PROMOTIONS", Title: "Stop promotions"})},
		}}},
		{"whatsapp-document.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Oliver Grant", oliver)},
			Messages: []Message{waMsg("wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQURPQzAwMQAA==", oliver, "document", "Signed contract", 1781100120)},
			Files: []File{{Platform: WhatsApp, MessageID: "wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQURPQzAwMQAA==", Subject: oliver, Kind: "document", MediaID: "2471189906234871",
				URL: waURLFor("2471189906234871", "1781100120"), MIMEType: "application/pdf", SHA256: "xj69y+AMBrfZMUMFa+K7N9ftx3xQdsHdOxyZMfNt24o=",
				Caption: "Signed contract", Filename: "contract-2026-06.pdf"}},
		}}},
		{"whatsapp-image.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Ana Souza", ana)},
			Messages: []Message{waMsg("wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQUlNRzAwMQAA==", ana, "image", "Photo of the damaged parcel", 1781100060)},
			Files: []File{{Platform: WhatsApp, MessageID: "wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQUlNRzAwMQAA==", Subject: ana, Kind: "image", MediaID: "1598743216549870",
				URL: waURLFor("1598743216549870", "1781100060"), MIMEType: "image/jpeg", SHA256: "173VRfCdinPCuZAzfIIR1wigTM2XSGJ2heT8ecwDgDk=", Caption: "Photo of the damaged parcel"}},
		}}},
		{"whatsapp-interactive-button-reply.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Ana Souza", ana)},
			Messages: []Message{withReply(waMsg("wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQUlCUjAwMQAA==", ana, "interactive", "Yes, reschedule", 1781100240), outWamid,
				&Reply{Kind: "button_reply", ID: "reschedule_yes", Title: "Yes, reschedule"})},
		}}},
		{"whatsapp-interactive-list-reply.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Oliver Grant", oliver)},
			Messages: []Message{withReply(waMsg("wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQUlMUjAwMQAA==", oliver, "interactive", "Fri 12 Jun 10:00", 1781100250), outWamid,
				&Reply{Kind: "list_reply", ID: "slot_2026_06_12_1000", Title: "Fri 12 Jun 10:00", Description: "Downtown branch"})},
		}}},
		{"whatsapp-location.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Ana Souza", ana)},
			Messages: []Message{func() Message {
				m := waMsg("wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQUxPQzAwMQAA==", ana, "location", "", 1781100180)
				m.Location = &Location{Latitude: 37.79551, Longitude: -122.39346, Name: "Ferry Building", Address: "1 Ferry Building, San Francisco, CA 94111"}
				return m
			}()},
		}}},
		{"whatsapp-reaction-removed.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Ana Souza", ana)},
			Messages: []Message{func() Message {
				m := waMsg("wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQVJDVDAwMgAA==", ana, "reaction", "", 1781100330)
				m.Reaction = &Reaction{MessageID: outWamid}
				return m
			}()},
		}}},
		{"whatsapp-reaction.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Ana Souza", ana)},
			Messages: []Message{func() Message {
				m := waMsg("wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQVJDVDAwMQAA==", ana, "reaction", "", 1781100300)
				m.Reaction = &Reaction{MessageID: outWamid, Emoji: "\U0001F44D"}
				return m
			}()},
		}}},
		{"whatsapp-status-delivered.json", []string{waPhone}, Parsed{Batch: Batch{
			Statuses: []Status{{Platform: WhatsApp, MessageID: outWamid, Subject: ana, State: StateDelivered, Timestamp: sec(1781100012)}},
		}}},
		{"whatsapp-status-failed.json", []string{waPhone}, Parsed{Batch: Batch{
			Statuses: []Status{{Platform: WhatsApp, MessageID: "wamid.HBgLNDQ3NzAwOTAwMTIzFQIAERgSNUY0QjFDOEQyRTlBMDdCMzE2AA==", Subject: oliver, State: StateFailed, Timestamp: sec(1781190000),
				Errors: []Error{{Code: 131047, Title: "Re-engagement message", Message: "Re-engagement message",
					Details: "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}}},
		}}},
		{"whatsapp-status-read.json", []string{waPhone}, Parsed{Batch: Batch{
			Statuses: []Status{{Platform: WhatsApp, MessageID: outWamid, Subject: ana, State: StateRead, Timestamp: sec(1781100095)}},
		}}},
		{"whatsapp-status-sent-v23-conversation.json", []string{waPhone}, Parsed{Batch: Batch{
			Statuses: []Status{{Platform: WhatsApp, MessageID: outWamid, Subject: ana, State: StateSent, Timestamp: sec(1781100010)}},
		}}},
		{"whatsapp-sticker.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Ana Souza", ana)},
			Messages: []Message{waMsg("wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQVNUSzAwMQAA==", ana, "sticker", "", 1781100170)},
			Files: []File{{Platform: WhatsApp, MessageID: "wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQVNUSzAwMQAA==", Subject: ana, Kind: "sticker", MediaID: "1122334455667788",
				URL: waURLFor("1122334455667788", "1781100170"), MIMEType: "image/webp", SHA256: "NHtAMUUtaAQ9shw9vBoRbzY4pYQOuyPnzuYVNq7ma2s="}},
		}}},
		{"whatsapp-text-unicode-wire-compact.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Jos\u00e9 M\u00fcller", ana)},
			Messages: []Message{waMsg("wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQVVOSTAwMUQ1RTc3QjJDNEEA", ana, "text", "Ol\u00e1! Pre\u00e7o do caf\u00e9? \U0001F44D https://example.com/menu", 1781100800)},
		}}},
		{"whatsapp-text.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Ana Souza", ana)},
			Messages: []Message{waMsg("wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQVRYVDAwMQAA==", ana, "text", "Hi! Is my order #4471 shipped yet?", 1781100000)},
		}}},
		{"whatsapp-unsupported-with-errors.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Oliver Grant", oliver)},
			Messages: []Message{func() Message {
				m := waMsg("wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQVVOUzAwMQAA==", oliver, "unsupported", "", 1781100400)
				m.Errors = []Error{{Code: 131051, Title: "Message type unknown", Message: "Message type unknown", Details: "Message type is currently not supported."}}
				return m
			}()},
		}}},
		{"whatsapp-value-level-errors.json", []string{waPhone}, Parsed{Ignored: []string{"whatsapp.errors"}}},
		// Extra fixtures written for this project (types the shared set lacks).
		{"../extra/whatsapp-video.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Ana Souza", ana)},
			Messages: []Message{waMsg("wamid.EXTRA-VIDEO-1", ana, "video", "Unboxing", 1781100500)},
			Files: []File{{Platform: WhatsApp, MessageID: "wamid.EXTRA-VIDEO-1", Subject: ana, Kind: "video", MediaID: "5550001112223334", MIMEType: "video/mp4",
				SHA256: "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b=", Caption: "Unboxing"}},
		}}},
		{"../extra/whatsapp-contacts-message.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Ana Souza", ana)},
			Messages: []Message{waMsg("wamid.EXTRA-CONTACTS-1", ana, "contacts", "", 1781100510)},
		}}},
		// Identity changes: the system message is stored (its body is the user's own
		// notice) and the change links the sender's identifiers to the new ones.
		{"../extra/whatsapp-system-user-changed-number.json", []string{waPhone}, Parsed{Batch: Batch{
			Messages: []Message{waMsg("wamid.EXTRA-SYSTEM-NUMBER-1", ana, "system", "User Ana Souza changed from 15555550142 to 15555550143", 1781100700)},
			Identities: []IdentityChange{{Platform: WhatsApp, MessageID: "wamid.EXTRA-SYSTEM-NUMBER-1", Type: IdentityChangedNumber,
				OldWaID: ana, NewWaID: "15555550143", Timestamp: sec(1781100700)}},
		}}},
		{"../extra/whatsapp-system-user-changed-user-id.json", []string{waPhone}, Parsed{Batch: Batch{
			Messages: []Message{{Platform: WhatsApp, ID: "wamid.EXTRA-SYSTEM-USERID-1", Subject: "US.13491208655302741918", SubjectAlt: ana,
				Direction: Inbound, Type: "system", Text: "User Ana Souza changed from US.13491208655302741918 to US.20000000000000000001", Timestamp: sec(1781100710)}},
			Identities: []IdentityChange{{Platform: WhatsApp, MessageID: "wamid.EXTRA-SYSTEM-USERID-1", Type: IdentityChangedUserID,
				OldWaID: ana, OldUserID: "US.13491208655302741918", NewWaID: "15555550143", NewUserID: "US.20000000000000000001",
				NewParentUserID: "US.ENT.11815799212886844830", Timestamp: sec(1781100710)}},
		}}},
		{"../extra/whatsapp-bsuid-username.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{{Platform: WhatsApp, Subject: "US.13491208655302741918", UserID: "US.13491208655302741918", Username: "mia.designs", Name: "Mia"}},
			Messages: []Message{waMsg("wamid.EXTRA-BSUID-1", "US.13491208655302741918", "text", "hello from a username", 1781100520)},
			Statuses: []Status{{Platform: WhatsApp, MessageID: "wamid.EXTRA-OUT-BSUID", Subject: "US.99999999999999999999", SubjectAlt: "15555550199", State: StateDelivered, Timestamp: sec(1781100521)}},
		}}},
		{"../extra/whatsapp-batch-two-numbers.json", []string{"999999999999999", waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Other Tenant User", "15555550777"), wantWAContact("Ana Souza", ana)},
			Messages: []Message{
				waMsg("wamid.EXTRA-FOREIGN-1", "15555550777", "text", "not for this channel", 1781100600),
				waMsg("wamid.EXTRA-OWN-1", ana, "text", "first", 1781100601),
				waMsg("wamid.EXTRA-OWN-2", ana, "text", "second", 1781100602),
			},
		}}},
		// Leads and conversation events (docs/meta-events.md).
		{"../extra/whatsapp-referral-ctwa.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Ana Souza", ana)},
			Messages: []Message{waMsg("wamid.EXTRA-CTWA-1", ana, "text", "Hi, I saw your ad for the blue dress", 1781100800)},
			Leads: []Lead{{Platform: WhatsApp, ID: "wamid.EXTRA-CTWA-1", Subject: ana, Event: LeadReferral, Source: SourceClickToWhatsApp, MetaSource: "ad",
				MessageID: "wamid.EXTRA-CTWA-1", Timestamp: sec(1781100800), SourceURL: "https://fb.me/3cr4Wqqkv", SourceID: "120212345678900123",
				SourceType: "ad", Headline: "Blue dress", Body: "Summer collection: 20% off this week", MediaType: "image",
				ImageURL: "https://scontent.xx.fbcdn.net/v/t45.1600-4/ad-image.jpg",
				CtwaClid: "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0-eM-GABDLOPaOdRMv-_zfUQ2a", WelcomeMessage: "Hi! How can we help?"}},
		}}},
		{"../extra/whatsapp-order.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Ana Souza", ana)},
			Messages: []Message{func() Message {
				m := waMsg("wamid.EXTRA-ORDER-1", ana, "order", "Please deliver on Friday", 1781100810)
				m.Order = &Order{CatalogID: "2240000000000001", Items: []OrderItem{
					{ProductRetailerID: "SKU-BLUE-DRESS-M", Quantity: 2, ItemPrice: 49.9, Currency: "EUR"},
					{ProductRetailerID: "SKU-BELT", Quantity: 1, ItemPrice: 12.5, Currency: "EUR"},
				}}
				return m
			}()},
		}}},
		{"../extra/whatsapp-voice-legacy.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Ana Souza", ana)},
			Messages: []Message{waMsg("wamid.EXTRA-VOICE-1", ana, "audio", "", 1781100820)},
			Files: []File{{Platform: WhatsApp, MessageID: "wamid.EXTRA-VOICE-1", Subject: ana, Kind: "audio", MediaID: "5550001112229999",
				MIMEType: "audio/ogg; codecs=opus", SHA256: "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c=", Voice: true}},
		}}},
		{"../extra/whatsapp-group-text.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Ana Souza", ana)},
			Messages: []Message{func() Message {
				m := waMsg("wamid.EXTRA-GROUP-1", ana, "text", "Can everyone in the team see this order?", 1781100830)
				m.GroupID = "120363040000000001@g.us"
				return m
			}()},
		}}},
		{"../extra/whatsapp-unknown-type.json", []string{waPhone}, Parsed{Batch: Batch{
			Contacts: []Contact{wantWAContact("Ana Souza", ana)},
			Messages: []Message{waMsg("wamid.EXTRA-UNKNOWN-1", ana, "unknown", "", 1781100840)},
		}}},
		{"../extra/messenger-reactions.json", []string{fbPage, fbPage}, Parsed{Batch: Batch{
			Contacts: []Contact{fbContact("6012345678901234"), fbContact("6012345678901234")},
			Messages: []Message{
				{Platform: Messenger, ID: "reaction:78a9bdf902e4369cd42975daeabecf86", Subject: "6012345678901234", Direction: Inbound, Type: "reaction",
					Timestamp: ms(1781101000100), Reaction: &Reaction{MessageID: "m_ZmFrZS1taWQtRUNITzE", Emoji: "\u2764\ufe0f", Name: "love"}},
				{Platform: Messenger, ID: "reaction:8e85469332762bef343c571a99db2560", Subject: "6012345678901234", Direction: Inbound, Type: "reaction",
					Timestamp: ms(1781101000200), Reaction: &Reaction{MessageID: "m_ZmFrZS1taWQtRUNITzE", Name: "love"}},
			},
		}}},
		{"../extra/messenger-referral-ad.json", []string{fbPage}, Parsed{Batch: Batch{
			Contacts: []Contact{fbContact("6012345678901234")},
			Leads: []Lead{{Platform: Messenger, ID: "referral:d8c9732c038f819cb724d1684859d34a", Subject: "6012345678901234", Event: LeadReferral,
				Source: SourceAd, MetaSource: "ADS", Type: "OPEN_THREAD", Timestamp: ms(1781101000300), Ref: "summer-campaign", AdID: "23851234567890123",
				AdTitle: "Summer collection", PhotoURL: "https://scontent.xx.fbcdn.net/v/ad-photo.jpg", PostID: "104857600123456_987654321"}},
		}}},
		{"../extra/messenger-referral-link-and-plugin.json", []string{fbPage, fbPage}, Parsed{Batch: Batch{
			Contacts: []Contact{fbContact("6012345678901234"), fbContact("ur-7f3a9c2e")},
			Leads: []Lead{
				{Platform: Messenger, ID: "referral:4e4b75296a30a0fb65bd8fd4e4a5db7f", Subject: "6012345678901234", Event: LeadReferral, Source: SourceLink,
					MetaSource: "SHORTLINK", Type: "OPEN_THREAD", Timestamp: ms(1781101000400), Ref: "flyer-lisbon"},
				{Platform: Messenger, ID: "referral:3e7bd0f87279e1707863c79ffa47337f", Subject: "ur-7f3a9c2e", Event: LeadReferral, Source: SourcePlugin,
					MetaSource: "CUSTOMER_CHAT_PLUGIN", Type: "OPEN_THREAD", Timestamp: ms(1781101000500), Ref: "pricing-page", RefererURI: "https://shop.example.com/pricing"},
			},
		}}},
		{"../extra/messenger-postback-referral.json", []string{fbPage}, Parsed{Batch: Batch{
			Contacts: []Contact{fbContact("6098765432109876")},
			Messages: []Message{{Platform: Messenger, ID: "postback:bac9cd69822d7d679e5816373daccc09", Subject: "6098765432109876", Direction: Inbound, Type: "postback",
				Text: "Get Started", Timestamp: ms(1781101000600), Reply: &Reply{Kind: "postback", ID: "GET_STARTED", Title: "Get Started"}}},
			Leads: []Lead{{Platform: Messenger, ID: "postback:bac9cd69822d7d679e5816373daccc09", Subject: "6098765432109876", Event: LeadReferral, Source: SourceLink,
				MetaSource: "SHORTLINK", Type: "OPEN_THREAD", MessageID: "postback:bac9cd69822d7d679e5816373daccc09", Timestamp: ms(1781101000600), Ref: "flyer-porto"}},
		}}},
		{"../extra/messenger-optin-plugin.json", []string{fbPage}, Parsed{Batch: Batch{
			Contacts: []Contact{fbContact("ur-checkbox-51c0")},
			Leads: []Lead{{Platform: Messenger, ID: "optin:4b6964b735e0dea8b0eb374a86b08a93", Subject: "ur-checkbox-51c0", Event: LeadOptin, Source: SourcePlugin,
				Timestamp: ms(1781101000700), Ref: "checkout-newsletter", UserRef: "ur-checkbox-51c0"}},
		}}},
		{"../extra/messenger-optin-recurring.json", []string{fbPage}, Parsed{Batch: Batch{
			Contacts: []Contact{fbContact("6012345678901234")},
			Leads: []Lead{{Platform: Messenger, ID: "optin:64c2d80356f90ea1b2daad08bfa96a14", Subject: "6012345678901234", Event: LeadOptin, Source: SourceNotifications,
				Type: "notification_messages", Timestamp: ms(1781101000800), Payload: "WEEKLY_DEALS", Title: "Weekly deals", NotificationFrequency: "WEEKLY",
				NotificationTimezone: "Europe/Lisbon", TokenStatus: "NOT_REFRESHED", TokenExpiresAt: ms(1796653000000), HasToken: true,
				Token: "NMT-SECRET-9d1e7a40c2b84f16"}},
		}}},
		{"../extra/messenger-sticker.json", []string{fbPage}, Parsed{Batch: Batch{
			Contacts: []Contact{fbContact("6012345678901234")},
			Messages: []Message{{Platform: Messenger, ID: "m_EXTRA-STICKER-1", Subject: "6012345678901234", Direction: Inbound, Type: "sticker", Timestamp: ms(1781101000900)}},
			Files: []File{{Platform: Messenger, MessageID: "m_EXTRA-STICKER-1", Subject: "6012345678901234", Kind: "image",
				URL: "https://scontent.xx.fbcdn.net/v/t39.1997-6/thumbs-up.png", StickerID: "369239263222822"}},
		}}},
		{"../extra/messenger-echo-without-text.json", []string{fbPage, fbPage}, Parsed{Batch: Batch{
			Contacts: []Contact{fbContact("6012345678901234"), fbContact("6012345678901234")},
			Messages: []Message{
				{Platform: Messenger, ID: "m_EXTRA-ECHO-TEMPLATE-1", Subject: "6012345678901234", Direction: Outbound, Type: "template", Timestamp: ms(1781101001000)},
				{Platform: Messenger, ID: "m_EXTRA-ECHO-BARE-1", Subject: "6012345678901234", Direction: Outbound, Type: "unknown", Timestamp: ms(1781101001100)},
			},
			Files: []File{{Platform: Messenger, MessageID: "m_EXTRA-ECHO-TEMPLATE-1", Subject: "6012345678901234", Kind: "template"}},
		}}},
		{"../extra/instagram-deleted.json", []string{igAcct}, Parsed{Batch: Batch{
			Deletions: []Deletion{{Platform: Instagram, MessageID: "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDE6ZmFrZS1pZy1UWFQx", Timestamp: ms(1781100999321)}},
		}}},
		{"../extra/instagram-story-reply.json", []string{igAcct}, Parsed{Batch: Batch{
			Contacts: []Contact{igContact},
			Messages: []Message{func() Message {
				m := igMsg("aWdfEXTRA-STORY-REPLY", "story_reply", "Love this look!", Inbound, 1781101000321)
				m.ReplyTo = "17900000000000002"
				return m
			}()},
		}}},
		{"../extra/messenger-standby-read-mid.json", []string{fbPage}, Parsed{Batch: Batch{
			Contacts: []Contact{fbContact("6012345678901234")},
			Messages: []Message{{Platform: Messenger, ID: "m_EXTRA-STANDBY-1", Subject: "6012345678901234", Direction: Inbound, Type: "text", Text: "are you there?",
				Timestamp: ms(1781100700100), Reply: &Reply{Kind: "quick_reply", ID: "YES"}}},
		}}},
	}
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fixtures", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

func TestFixturesNormalize(t *testing.T) {
	t.Parallel()
	cases := fixtureCases()
	// Every shared fixture must be covered: a new file without a case fails here.
	files, _ := filepath.Glob(filepath.Join("testdata", "fixtures", "*.json"))
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.file] = true
	}
	for _, f := range files {
		if !covered[filepath.Base(f)] {
			t.Errorf("fixture %s has no expected records", filepath.Base(f))
		}
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			body := readFixture(t, tc.file)
			parts, err := Split(body)
			if err != nil {
				t.Fatalf("Split: %v", err)
			}
			var accounts []string
			for _, p := range parts {
				accounts = append(accounts, p.AccountID)
			}
			if !reflect.DeepEqual(accounts, tc.accounts) {
				t.Errorf("part accounts = %v, want %v", accounts, tc.accounts)
			}
			got, err := ParseDelivery(body)
			if err != nil {
				t.Fatalf("ParseDelivery: %v", err)
			}
			for i := range got.Batch.Messages {
				m := &got.Batch.Messages[i]
				// A generated id (an event without a Meta id) is derived from its raw item.
				prefix, _, _ := strings.Cut(m.ID, ":")
				generated := m.ID == GeneratedID(prefix, m.Platform, m.Raw)
				if !json.Valid(m.Raw) || !generated && !bytes.Contains(m.Raw, []byte(`"`+strings.ReplaceAll(m.ID, "/", `\/`)+`"`)) && !bytes.Contains(m.Raw, []byte(m.ID)) {
					t.Errorf("message %s: raw fragment %q is not its JSON", m.ID, m.Raw)
				}
				if m.Timestamp.Location() != time.UTC {
					t.Errorf("message %s: timestamp not UTC", m.ID)
				}
				m.Raw = nil
			}
			if !reflect.DeepEqual(got, tc.want) {
				g, _ := json.MarshalIndent(got, "", " ")
				w, _ := json.MarshalIndent(tc.want, "", " ")
				t.Errorf("normalized records differ\n got: %s\nwant: %s", g, w)
			}
		})
	}
}

func TestSplitMalformed(t *testing.T) {
	t.Parallel()
	for _, body := range []string{``, `{`, `[]`, `"x"`, `{"entry":[]}`, `{"object":"page","entry":{}}`, `{"object":"page","entry":[{"changes":[1]}]}`, `null`} {
		if _, err := Split([]byte(body)); err == nil {
			t.Errorf("Split(%q) accepted a malformed body", body)
		}
	}
}

func TestPartErrors(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"wa value not an object":   `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":[1,2]}]}]}`,
		"wa statuses not an array": `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"statuses":{"id":"w"}}}]}]}`,
		"messenger message no id":  `{"object":"page","entry":[{"id":"1","messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1,"message":{"text":"x"}}]}]}`,
	} {
		parts, err := Split([]byte(body))
		if err != nil {
			t.Fatalf("%s: Split: %v", name, err)
		}
		if _, err := parts[0].Parse(); err == nil {
			t.Errorf("%s: Parse accepted it", name)
		}
	}
}

// waChange wraps WhatsApp change value items in a delivery.
func waChange(items string) string {
	return `{"object":"whatsapp_business_account","entry":[{"id":"1","time":1781100009,"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2"},` + items + `}}]}]}`
}

// An item no storable record can be made of is left out alone and reported; its
// siblings in the same part are kept.
func TestInvalidItemsLeftOut(t *testing.T) {
	t.Parallel()
	good := `{"from":"44","id":"wamid.good","timestamp":"1781100000","type":"text","text":{"body":"hi"}}`
	goodMsg := waMsg("wamid.good", "44", "text", "hi", 1781100000)
	goodStatus := `{"id":"wamid.out","status":"read","timestamp":"1781100005","recipient_id":"44"}`
	readStatus := Status{Platform: WhatsApp, MessageID: "wamid.out", Subject: "44", State: StateRead, Timestamp: sec(1781100005)}
	for _, tc := range []struct {
		name    string
		body    string
		want    Batch
		invalid []string // kinds, in order
	}{
		{"wa bad timestamp", waChange(`"messages":[{"from":"44","id":"wamid.bad","timestamp":"soon","type":"text","text":{"body":"x"}},` + good + `]`),
			Batch{Messages: []Message{goodMsg}}, []string{"whatsapp.message"}},
		{"wa message without id", waChange(`"messages":[` + good + `,{"from":"44","timestamp":"1","type":"text","text":{"body":"x"}}]`),
			Batch{Messages: []Message{goodMsg}}, []string{"whatsapp.message"}},
		{"wa message without sender", waChange(`"messages":[{"from":"","id":"wamid.bad","type":"text","text":{"body":"x"}},` + good + `]`),
			Batch{Messages: []Message{goodMsg}}, []string{"whatsapp.message"}},
		{"wa message with a wrongly typed field", waChange(`"messages":[{"from":"44","id":7,"type":"text","text":{"body":"x"}},` + good + `]`),
			Batch{Messages: []Message{goodMsg}}, []string{"whatsapp.message"}},
		{"wa image without its object leaves no file", waChange(`"messages":[{"from":"44","id":"wamid.bad","type":"image"},null,` + good + `]`),
			Batch{Messages: []Message{goodMsg}}, []string{"whatsapp.message", "whatsapp.message"}},
		{"wa missing timestamp is not invalid", waChange(`"messages":[{"from":"44","id":"wamid.nots","type":"text","text":{"body":"x"}}]`),
			Batch{Messages: []Message{waMsg("wamid.nots", "44", "text", "x", 1781100009)}}, nil},
		{"wa contact without ids", waChange(`"contacts":[{"profile":{"name":"N"}},{"wa_id":{"x":1}},{"wa_id":"44"}],"messages":[` + good + `]`),
			Batch{Contacts: []Contact{{Platform: WhatsApp, Subject: "44", WaID: "44"}}, Messages: []Message{goodMsg}}, []string{"whatsapp.contact", "whatsapp.contact"}},
		{"wa status bad timestamp", waChange(`"statuses":[{"id":"wamid.x","status":"sent","timestamp":"soon"},` + goodStatus + `]`),
			Batch{Statuses: []Status{readStatus}}, []string{"whatsapp.status"}},
		{"wa status without id", waChange(`"statuses":[` + goodStatus + `,{"status":"delivered","timestamp":"1781100006"}]`),
			Batch{Statuses: []Status{readStatus}}, []string{"whatsapp.status"}},
		{"messenger delivery with an empty mid", `{"object":"page","entry":[{"id":"1","messaging":[{"sender":{"id":"6"},"recipient":{"id":"1"},"timestamp":1781100300600,"delivery":{"mids":["","m_1"],"watermark":1781100300512}}]}]}`,
			Batch{
				Statuses: []Status{{Platform: Messenger, MessageID: "m_1", Subject: "6", State: StateDelivered, Timestamp: ms(1781100300512)}},
				Receipts: []Receipt{{Platform: Messenger, Subject: "6", State: StateDelivered, Watermark: ms(1781100300512)}},
			}, []string{"messenger.delivery"}},
		{"instagram delivery with only an empty mid", `{"object":"instagram","entry":[{"id":"1","messaging":[{"sender":{"id":"6"},"recipient":{"id":"1"},"timestamp":1781100300600,"delivery":{"mids":[""],"watermark":1781100300512}}]}]}`,
			Batch{Receipts: []Receipt{{Platform: Instagram, Subject: "6", State: StateDelivered, Watermark: ms(1781100300512)}}}, []string{"instagram.delivery"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseDelivery([]byte(tc.body))
			if err != nil {
				t.Fatalf("ParseDelivery: %v", err)
			}
			for i := range got.Batch.Messages {
				got.Batch.Messages[i].Raw = nil
			}
			if !reflect.DeepEqual(got.Batch, tc.want) {
				t.Errorf("records\n got: %+v\nwant: %+v", got.Batch, tc.want)
			}
			var kinds []string
			for _, inv := range got.Invalid {
				kinds = append(kinds, inv.Kind)
				if inv.Err == nil {
					t.Errorf("invalid %s without a reason", inv.Kind)
				} else if msg := inv.Err.Error(); strings.Contains(msg, "soon") || strings.Contains(msg, "44") || strings.Contains(msg, "wamid") {
					t.Errorf("reason %q carries payload values", msg)
				}
			}
			if !reflect.DeepEqual(kinds, tc.invalid) {
				t.Errorf("invalid kinds = %v, want %v", kinds, tc.invalid)
			}
		})
	}
}

func TestTimestamps(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Time{
		`"1781100000"`:    sec(1781100000),
		`1781100000`:      sec(1781100000),
		`1781100123001`:   ms(1781100123001),
		`"1781100123001"`: ms(1781100123001),
		`1781100000.0`:    sec(1781100000),
		`null`:            {},
	} {
		got, err := parseTime([]byte(in))
		if err != nil || !got.Equal(want) || (!got.IsZero() && got.Location() != time.UTC) {
			t.Errorf("parseTime(%s) = %v, %v; want %v UTC", in, got, err, want)
		}
	}
	for _, in := range []string{`"abc"`, `-5`, `1e30`, `true`} {
		if _, err := parseTime([]byte(in)); err == nil {
			t.Errorf("parseTime(%s) accepted", in)
		}
	}
}

func TestPartEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	body := readFixture(t, "../extra/whatsapp-batch-two-numbers.json")
	parts, err := Split(body)
	if err != nil {
		t.Fatal(err)
	}
	// Forwarding one part alone must yield exactly that part's records.
	env, err := parts[1].Envelope()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseDelivery(env)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Batch.Messages) != 2 || got.Batch.Messages[0].ID != "wamid.EXTRA-OWN-1" {
		t.Fatalf("forwarded part parsed to %+v", got.Batch.Messages)
	}
	again, _ := Split(env)
	if len(again) != 1 || again[0].AccountID != waPhone {
		t.Fatalf("forwarded part attribution = %+v", again)
	}
}

// A system message of a type that changes no identifier is kept as a message and links
// nothing; an identity change without a new identifier, or a system message without its
// object, is left out as invalid without losing its valid siblings.
func TestWhatsAppSystemMessages(t *testing.T) {
	t.Parallel()
	const sibling = `{"from":"3","id":"w-ok","timestamp":"1781100000","type":"text","text":{"body":"y"}}`
	for name, tc := range map[string]struct {
		msg        string
		messages   []string
		identities int
		invalid    int
	}{
		"other system type":             {`{"from":"3","id":"w-sys","timestamp":"1781100000","type":"system","system":{"body":"security code changed","type":"user_identity_changed"}}`, []string{"w-sys", "w-ok"}, 0, 0},
		"change without new identifier": {`{"from":"3","id":"w-sys","timestamp":"1781100000","type":"system","system":{"body":"x","type":"user_changed_number"}}`, []string{"w-ok"}, 0, 1},
		"system without its object":     {`{"from":"3","id":"w-sys","timestamp":"1781100000","type":"system"}`, []string{"w-ok"}, 0, 1},
		"new number only":               {`{"from":"3","id":"w-sys","timestamp":"1781100000","type":"system","system":{"wa_id":4,"type":"user_changed_number"}}`, []string{"w-sys", "w-ok"}, 1, 0},
		"new user id only (username)":   {`{"from_user_id":"US.1","id":"w-sys","timestamp":"1781100000","type":"system","system":{"user_id":"US.2","type":"user_changed_user_id"}}`, []string{"w-sys", "w-ok"}, 1, 0},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseDelivery([]byte(waChange(`"messages":[` + tc.msg + `,` + sibling + `]`)))
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range got.Batch.Messages {
				ids = append(ids, m.ID)
			}
			if !reflect.DeepEqual(ids, tc.messages) || len(got.Batch.Identities) != tc.identities || len(got.Invalid) != tc.invalid {
				t.Fatalf("messages %v, %d identity changes, invalid %v; want %v, %d, %d", ids, len(got.Batch.Identities), got.Invalid, tc.messages, tc.identities, tc.invalid)
			}
			for _, c := range got.Batch.Identities {
				if len(c.Identifiers()) != 2 || c.MessageID != "w-sys" {
					t.Errorf("identity change %+v", c)
				}
			}
		})
	}
}

// Combine joins deliveries into one whose parts are theirs, in order.
func TestCombine(t *testing.T) {
	a := []byte(`{"object":"page","entry":[{"id":"1","time":5,"messaging":[{"message":{"mid":"a"}}]}]}`)
	b := []byte(`{"object":"page","entry":[{"id":"2","messaging":[{"message":{"mid":"b"}}],"standby":[{"x":1}]}]}`)
	out, err := Combine(a, b)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := Split(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range parts {
		got = append(got, p.EntryID+"/"+p.Field+"/"+string(p.Raw))
	}
	want := []string{`1/messaging/{"message":{"mid":"a"}}`, `2/messaging/{"message":{"mid":"b"}}`, `2/standby/{"x":1}`}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("parts %v, want %v", got, want)
	}
	if _, err := Combine(a, []byte(`{"object":"instagram","entry":[{"id":"3","messaging":[{}]}]}`)); err == nil {
		t.Fatal("deliveries of two objects combined")
	}
}
