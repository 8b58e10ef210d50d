// Package storegen makes synthetic tenants' records, the same for every backend: the
// query-plan tests and `make bench-erasure` fill stores with them.
package storegen

import (
	"fmt"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// Epoch is the timestamp of a person's first message; message k is k seconds later.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// WaID is person i's phone number (wa_id), UserID their business-scoped id.
func WaID(i int) string   { return fmt.Sprintf("1555%08d", i) }
func UserID(i int) string { return fmt.Sprintf("US.%d", 1_000_000_000+i) }

// MessageID is the id of person i's message k.
func MessageID(i, k int) string { return fmt.Sprintf("wamid.%d.%d", i, k) }

// Person is one delivery's worth of person i on WhatsApp channel "wa": their contact
// (every other person also known by business-scoped id), messages first..first+n-1 at
// Epoch (plus k seconds, plus offset), a delivery status of each, a file on every tenth
// a Click-to-WhatsApp referral (lead) for every odd-numbered person, a Messenger read receipt for
// every second and, for every third, a change of number from an older one (all in
// their first batch).
func Person(i, first, n int, offset time.Duration) meta.Batch {
	c := meta.Contact{Platform: meta.WhatsApp, Channel: "wa", Subject: WaID(i), WaID: WaID(i), Name: fmt.Sprintf("Person %d", i)}
	alt := ""
	if i%2 == 1 {
		c.UserID = UserID(i)
		c.Subject = c.UserID
		alt = WaID(i)
	}
	b := meta.Batch{Contacts: []meta.Contact{c}}
	for k := first; k < first+n; k++ {
		ts := Epoch.Add(offset + time.Duration(k)*time.Second)
		id := MessageID(i, k)
		b.Messages = append(b.Messages, meta.Message{Platform: meta.WhatsApp, Channel: "wa", ID: id, Subject: c.Subject, SubjectAlt: alt,
			Direction: meta.Inbound, Type: "text", Text: "hello from a synthetic person", Timestamp: ts})
		b.Statuses = append(b.Statuses, meta.Status{Platform: meta.WhatsApp, Channel: "wa", MessageID: id + ".out", Subject: c.Subject, SubjectAlt: alt,
			State: "delivered", Timestamp: ts})
		if k%10 == 0 {
			b.Files = append(b.Files, meta.File{Platform: meta.WhatsApp, Channel: "wa", MessageID: id, Subject: c.Subject, SubjectAlt: alt,
				Kind: "image", MediaID: "media." + id})
		}
	}
	if first == 0 && i%2 == 1 && n > 0 {
		b.Leads = append(b.Leads, meta.Lead{Platform: meta.WhatsApp, Channel: "wa", ID: MessageID(i, first), Subject: c.Subject, SubjectAlt: alt,
			Event: meta.LeadReferral, Source: meta.SourceClickToWhatsApp, MessageID: MessageID(i, first), Timestamp: Epoch.Add(offset)})
	}
	if first == 0 && i%2 == 0 {
		b.Receipts = append(b.Receipts, meta.Receipt{Platform: meta.Messenger, Channel: "page", Subject: fmt.Sprintf("psid.%d", i),
			State: "read", Watermark: Epoch.Add(offset + time.Duration(i)*time.Millisecond)})
	}
	if first == 0 && i%3 == 0 {
		b.Identities = append(b.Identities, meta.IdentityChange{Platform: meta.WhatsApp, Channel: "wa", MessageID: MessageID(i, -1),
			Type: meta.IdentityChangedNumber, OldWaID: "old" + WaID(i), NewWaID: WaID(i)})
	}
	return b
}
