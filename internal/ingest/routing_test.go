package ingest

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

const otherSecret = "other_app_secret_fedcba9876543210"

// routingChannels: two WhatsApp numbers and two Pages under the test app, and a third
// number signed for by another Meta app.
func routingChannels() []channels.Channel {
	chs := slices.Clone(testChannels)
	return append(chs,
		channels.Channel{Name: "wa2", Platform: meta.WhatsApp, WhatsApp: &channels.WhatsAppIDs{PhoneNumberID: "999999999999999", BusinessAccountID: "109876543210987"},
			AppSecret: secret, VerifyToken: "wa2-token"},
		channels.Channel{Name: "page2", Platform: meta.Messenger, Messenger: &channels.MessengerIDs{PageID: "104857600999999"}, AppSecret: secret, VerifyToken: "page2-token"},
		channels.Channel{Name: "own-app", Platform: meta.WhatsApp, WhatsApp: &channels.WhatsAppIDs{PhoneNumberID: "555555555555555", BusinessAccountID: "200000000000002"},
			AppSecret: otherSecret, VerifyToken: "own-token"},
	)
}

// mixed joins several deliveries of one object into one.
func mixed(t *testing.T, bodies ...[]byte) []byte {
	t.Helper()
	out, err := meta.Combine(bodies...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func channelsOf(msgs []meta.Message) map[string]string {
	out := map[string]string{}
	for _, m := range msgs {
		out[m.ID] = m.Channel
	}
	return out
}

// A part for another of the worker's channels under the same app is handled by that
// channel, whichever of the app's URLs the delivery came in on; never dropped.
func TestPartOfAnotherChannelIsHandledByIt(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, Options{}, routingChannels())
	body := readFile(t, filepath.Join(extraDir, "whatsapp-batch-two-numbers.json"))
	if code := e.postSigned("wa", body); code != 200 {
		t.Fatalf("POST: %d", code)
	}
	want := map[string]string{"wamid.EXTRA-FOREIGN-1": "wa2", "wamid.EXTRA-OWN-1": "wa", "wamid.EXTRA-OWN-2": "wa"}
	if got := channelsOf(e.dump().Messages); !mapsEqual(got, want) {
		t.Fatalf("stored messages by channel %v, want %v", got, want)
	}
	if v := counterValue(t, e.m.ignored.WithLabelValues("whatsapp.messages", ReasonForeignAccount)); v != 0 {
		t.Errorf("foreign changes counted %v, want 0", v)
	}
	// Messenger: one delivery with entries of two Pages, posted to a third channel's
	// URL (the Instagram one, same app): each Page's message lands on its own channel.
	text := readFile(t, filepath.Join(fixtureDir, "messenger-text.json"))
	other := bytes.ReplaceAll(bytes.ReplaceAll(text, []byte("104857600123456"), []byte("104857600999999")), []byte("m_ZmFrZS1taWQtVFhUMQ"), []byte("m_other-page"))
	if code := e.postSigned("ig", mixed(t, text, other)); code != 200 {
		t.Fatalf("mixed Messenger POST: %d", code)
	}
	got := channelsOf(e.dump().Messages)
	if got["m_ZmFrZS1taWQtVFhUMQ"] != "page" || got["m_other-page"] != "page2" {
		t.Fatalf("Messenger messages by channel %v: want page and page2", got)
	}
	// Redelivered on the other Page's URL: every message is stored once.
	if code := e.postSigned("page2", mixed(t, text, other)); code != 200 || len(e.dump().Messages) != 5 {
		t.Fatalf("redelivery: %d, %d messages, want 5", code, len(e.dump().Messages))
	}
}

// A delivery signed with one app's secret can only carry that app's accounts: a part
// naming a channel of another app is not taken for it, and is counted as foreign.
func TestPartOfAnotherAppsChannelIsForeign(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, Options{}, routingChannels())
	mine := waDelivery("123456789012345", "wamid.MINE")
	theirs := waDelivery("555555555555555", "wamid.THEIRS")
	if code := e.postSigned("wa", mixed(t, mine, theirs)); code != 200 {
		t.Fatalf("POST: %d", code)
	}
	if got := channelsOf(e.dump().Messages); !mapsEqual(got, map[string]string{"wamid.MINE": "wa"}) {
		t.Fatalf("stored %v: want only the app's own message", got)
	}
	if v := counterValue(t, e.m.ignored.WithLabelValues("whatsapp.messages", ReasonForeignAccount)); v != 1 {
		t.Errorf("foreign changes counted %v, want 1", v)
	}
	// The other app's own URL, with its own secret, takes only its own part.
	code, _ := e.post("own-app", mixed(t, mine, theirs), meta.Sign([]byte(otherSecret), mixed(t, mine, theirs)))
	if got := channelsOf(e.dump().Messages); code != 200 || !mapsEqual(got, map[string]string{"wamid.MINE": "wa", "wamid.THEIRS": "own-app"}) {
		t.Fatalf("own app: %d, stored %v", code, got)
	}
}

// An account removal notice reaches every channel of the business account under the
// delivery's app, whichever URL it came in on, and no channel of another app.
func TestAccountRemovalReachesTheOwningChannels(t *testing.T) {
	t.Parallel()
	var got []string
	e := newEnvWith(t, Options{Offboard: func(ch, _ string) { got = append(got, ch) }}, routingChannels())
	if code := e.postSigned("page", readFile(t, filepath.Join(fixtureDir, "whatsapp-account-update-account-deleted.json"))); code != 200 {
		t.Fatalf("POST: %d", code)
	}
	if !slices.Equal(got, []string{"wa", "wa2"}) {
		t.Fatalf("offboarded %v, want [wa wa2]", got)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
