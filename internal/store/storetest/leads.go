package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// leadTests are the conformance tests of lead attribution records.
var leadTests = []struct {
	name string
	fn   func(*testing.T, store.Store)
}{
	{"LeadsStoredOnceWithFirstAndLastTouch", testLeadTouches},
	{"LeadTokenNeverExported", testLeadTokenNotExported},
	{"LeadsErasedWithTheSubjectsContacts", testLeadsErased},
	{"LeadsPrunedByOwnTimestamp", testLeadsPruned},
}

const (
	leadPSID  = "psid-lead"
	leadToken = "NMT-SECRET-conformance-7c1d"
)

// lead is a Messenger lead of subject on channel "fb", sec seconds after t0.
func lead(id, subject, source string, sec int) meta.Lead {
	return meta.Lead{Platform: meta.Messenger, Channel: "fb", ID: id, Subject: subject, Event: meta.LeadReferral,
		Source: source, MetaSource: "ADS", Ref: "ref-" + id, Timestamp: t0.Add(time.Duration(sec) * time.Second)}
}

// tokenLead is a recurring notification opt-in carrying leadToken.
func tokenLead(id, subject string, sec int) meta.Lead {
	l := lead(id, subject, meta.SourceNotifications, sec)
	l.Event, l.MetaSource, l.Type, l.Token, l.HasToken = meta.LeadOptin, "", "notification_messages", leadToken, true
	return l
}

func leadBatch(leads ...meta.Lead) meta.Batch {
	b := meta.Batch{Leads: leads}
	seen := map[string]bool{}
	for _, l := range leads {
		if !seen[l.Subject] {
			seen[l.Subject] = true
			b.Contacts = append(b.Contacts, meta.Contact{Platform: l.Platform, Channel: l.Channel, Subject: l.Subject})
		}
	}
	return b
}

func testLeadTouches(t *testing.T, s store.Store) {
	ctx := context.Background()
	// Stored out of time order: first and last touch go by the touches' own times.
	b := leadBatch(tokenLead("optin-1", leadPSID, 30), lead("ref-ad", leadPSID, meta.SourceAd, 10),
		lead("ref-link", leadPSID, meta.SourceLink, 20), lead("ref-other", "psid-other", meta.SourceLink, 5))
	if res := commit(t, s, b); res.LeadsNew != 4 {
		t.Fatalf("LeadsNew = %d, want 4", res.LeadsNew)
	}
	if res := commit(t, s, b); res.LeadsNew != 0 {
		t.Fatalf("a redelivery stored %d leads again", res.LeadsNew)
	}
	if got := Export(t, s, nil).Leads; len(got) != 4 {
		t.Fatalf("exported %d leads, want 4: %+v", len(got), got)
	}
	touches, err := store.LeadTouches(ctx, s, store.Filter{Subject: &store.Subject{ID: leadPSID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(touches) != 1 {
		t.Fatalf("touches of one subject = %+v, want one contact", touches)
	}
	tc := touches[0]
	if tc.First.ID != "ref-ad" || tc.Last.ID != "optin-1" || len(tc.All) != 3 || tc.All[1].ID != "ref-link" {
		t.Errorf("first %s, last %s, all %d: want ref-ad, optin-1 and 3", tc.First.ID, tc.Last.ID, len(tc.All))
	}
	if !tc.Last.HasToken || tc.Last.Token != "" {
		t.Errorf("last touch: hasToken %v, token exported %q", tc.Last.HasToken, string(tc.Last.Token))
	}
	all, err := store.LeadTouches(ctx, s, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Subject != leadPSID || all[1].First.ID != "ref-other" {
		t.Errorf("touches of every contact = %+v", all)
	}
}

func testLeadTokenNotExported(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, leadBatch(tokenLead("optin-1", leadPSID, 1)))
	for _, f := range []*store.Subject{nil, {ID: leadPSID}, {Platform: meta.Messenger, ID: leadPSID}} {
		var out bytes.Buffer
		enc := json.NewEncoder(&out)
		if err := s.Export(ctx, store.Filter{Subject: f}, func(r store.Record) error { return enc.Encode(r) }); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(out.Bytes(), []byte(leadToken)) {
			t.Fatalf("the export (subject %v) carries the notification token:\n%s", f, out.Bytes())
		}
		if !bytes.Contains(out.Bytes(), []byte(`"hasToken":true`)) {
			t.Fatalf("the export (subject %v) does not say a token exists:\n%s", f, out.Bytes())
		}
	}
	tok, err := s.LeadToken(ctx, meta.Messenger, "optin-1")
	if err != nil || string(tok) != leadToken {
		t.Fatalf("LeadToken = %v, %v: the token was not kept", tok, err)
	}
	if tok, err := s.LeadToken(ctx, meta.Messenger, "nope"); err != nil || tok != "" {
		t.Fatalf("LeadToken of an unknown lead = %v, %v", tok, err)
	}
}

func testLeadsErased(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, leadBatch(tokenLead("optin-1", leadPSID, 1), lead("ref-1", leadPSID, meta.SourceAd, 2), lead("ref-other", "psid-other", meta.SourceAd, 3)))
	// A WhatsApp lead filed under a business-scoped id, found by the phone number.
	wa := meta.Lead{Platform: meta.WhatsApp, Channel: ch, ID: "wamid.ctwa", Subject: "US.1", SubjectAlt: numA,
		Event: meta.LeadReferral, Source: meta.SourceClickToWhatsApp, CtwaClid: "clid", Timestamp: t0}
	commit(t, s, meta.Batch{Contacts: []meta.Contact{waContact("US.1", numA, "US.1", "Ana")}, Messages: []meta.Message{msg("wamid.ctwa", "US.1", 0)}, Leads: []meta.Lead{wa}})

	if _, err := s.Erase(ctx, store.EraseRequest{Subject: store.Subject{ID: leadPSID}, Scope: store.ScopeMessages | store.ScopeFiles}); err != nil {
		t.Fatal(err)
	}
	if got := len(Export(t, s, &store.Subject{ID: leadPSID}).Leads); got != 2 {
		t.Fatalf("an erasure without scope Contacts left %d leads, want 2", got)
	}
	c, err := s.Erase(ctx, store.EraseRequest{Subject: store.Subject{ID: leadPSID}, Scope: store.ScopeContacts})
	if err != nil {
		t.Fatal(err)
	}
	if c.Contacts != 3 { // the contact row and two leads
		t.Errorf("erased contacts = %d, want 3 (one contact, two leads)", c.Contacts)
	}
	if got := Export(t, s, &store.Subject{ID: leadPSID}).Leads; len(got) != 0 {
		t.Errorf("leads left after erasure: %+v", got)
	}
	if tok, err := s.LeadToken(ctx, meta.Messenger, "optin-1"); err != nil || tok != "" {
		t.Errorf("token left after erasure: %v, %v", tok != "", err)
	}
	if _, err := s.Erase(ctx, store.EraseRequest{Subject: store.Subject{Platform: meta.WhatsApp, ID: numA}}); err != nil {
		t.Fatal(err)
	}
	left := Export(t, s, nil).Leads
	if len(left) != 1 || left[0].ID != "ref-other" {
		t.Errorf("leads left = %+v, want only the bystander's", left)
	}
}

func testLeadsPruned(t *testing.T, s store.Store) {
	ctx := context.Background()
	old1, old2 := lead("old-1", leadPSID, meta.SourceAd, 0), tokenLead("old-2", leadPSID, 0)
	old1.Timestamp, old2.Timestamp = at(-20), at(-10)
	young := lead("young", "psid-young", meta.SourceLink, 0)
	young.Timestamp = at(10)
	// The young lead's person also has an old one: their contact stays for the young.
	youngOld := lead("young-old", "psid-young", meta.SourceLink, 0)
	youngOld.Timestamp = at(-30)
	commit(t, s, leadBatch(old1, old2, young, youngOld))

	p := prune(t, s, 2)
	if !p.More || p.Counts.Contacts < 2 {
		t.Fatalf("first batch of 2 = %+v, want More and two leads", p)
	}
	for p.More {
		p = prune(t, s, 2)
	}
	d := Export(t, s, nil)
	if len(d.Leads) != 1 || d.Leads[0].ID != "young" {
		t.Fatalf("leads after retention = %+v, want only the young one", d.Leads)
	}
	if len(d.Contacts) != 1 || d.Contacts[0].Subject != "psid-young" {
		t.Errorf("contacts after retention = %+v, want only psid-young's (the other has nothing left)", d.Contacts)
	}
	if tok, err := s.LeadToken(ctx, meta.Messenger, "old-2"); err != nil || tok != "" {
		t.Errorf("token left after retention: %v, %v", tok != "", err)
	}
}
