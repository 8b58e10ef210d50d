package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Identities of one person who changes phone number twice, and of a bystander.
const (
	numA, numB, numC = "15555550142", "15555550143", "15555550144"
	bsuidA, bsuidB   = "US.13491208655302741918", "US.20000000000000000001"
	bystander        = "447700900123"
)

func waContact(subject, waID, userID, name string) meta.Contact {
	return meta.Contact{Platform: meta.WhatsApp, Channel: ch, Subject: subject, WaID: waID, UserID: userID, Name: name}
}

// numberChange is what the parser makes of a user_changed_number system message from old.
func numberChange(msgID, old, newNum string, sec int) meta.Batch {
	m := msg(msgID, old, sec)
	m.Type, m.Text = "system", "User Ana changed from "+old+" to "+newNum
	return meta.Batch{
		Messages: []meta.Message{m},
		Identities: []meta.IdentityChange{{Platform: meta.WhatsApp, Channel: ch, MessageID: msgID, Type: meta.IdentityChangedNumber,
			OldWaID: old, NewWaID: newNum, Timestamp: m.Timestamp}},
	}
}

// personBefore stores what a tenant holds of Ana under her first number, and of a
// bystander who must never be touched.
func personBefore(t *testing.T, s store.Store) {
	t.Helper()
	commit(t, s, meta.Batch{
		Contacts: []meta.Contact{waContact(numA, numA, "", "Ana"), waContact(bystander, bystander, "", "Oliver")},
		Messages: []meta.Message{msg("a1", numA, 1), msg("o1", bystander, 2)},
		Statuses: []meta.Status{status("out-a", numA, meta.StateRead, 3), status("out-o", bystander, meta.StateRead, 3)},
		Files:    []meta.File{{Platform: meta.WhatsApp, Channel: ch, MessageID: "a1", Subject: numA, Kind: "image", MediaID: "9"}},
	})
}

func subjectExport(t *testing.T, s store.Store, id string) Dump {
	t.Helper()
	return Export(t, s, &store.Subject{Platform: meta.WhatsApp, ID: id})
}

// A number change is stored and joins the old and the new number into one contact,
// keyed by the new number, even when the new number wrote before the notice arrived: an
// export by either returns both numbers' messages and the change itself, never the
// bystander's; a redelivered notice changes nothing.
func testIdentityChangeLinks(t *testing.T, s store.Store) {
	personBefore(t, s)
	commit(t, s, meta.Batch{Contacts: []meta.Contact{waContact(numB, numB, "", "Ana Souza")}, Messages: []meta.Message{msg("b1", numB, 5)}})
	if ids := messageIDs(subjectExport(t, s, numA)); !reflect.DeepEqual(ids, []string{"a1"}) {
		t.Fatalf("before the notice the numbers are two people; export by the old one: %v", ids)
	}
	change := numberChange("sys-1", numA, numB, 4)
	if res := commit(t, s, change); res.IdentityChanges != 1 || res.MessagesNew != 1 {
		t.Fatalf("number change: %+v", res)
	}
	if res := commit(t, s, change); res.IdentityChanges != 0 || res.MessagesDuplicate != 1 {
		t.Fatalf("redelivered change: %+v", res)
	}
	// The old number writing again (a late redelivery) is still Ana.
	commit(t, s, meta.Batch{Messages: []meta.Message{msg("a2", numA, 6)}})
	wantContacts := []meta.Contact{waContact(numB, numB, "", "Ana Souza")}
	for _, id := range []string{numA, numB} {
		d := subjectExport(t, s, id)
		if ids := messageIDs(d); !reflect.DeepEqual(ids, []string{"a1", "a2", "b1", "sys-1"}) {
			t.Errorf("export by %s: messages %v", id, ids)
		}
		if !reflect.DeepEqual(d.Contacts, wantContacts) {
			t.Errorf("export by %s: contacts %+v, want one: %+v", id, d.Contacts, wantContacts)
		}
		if len(d.Statuses) != 1 || len(d.Files) != 1 || len(d.IdentityChanges) != 1 {
			t.Errorf("export by %s: %d statuses, %d files, %d identity changes", id, len(d.Statuses), len(d.Files), len(d.IdentityChanges))
		}
		if got := d.IdentityChanges; len(got) == 1 && !reflect.DeepEqual(got[0], change.Identities[0]) {
			t.Errorf("identity change %+v, want %+v", got[0], change.Identities[0])
		}
	}
	if d := subjectExport(t, s, bystander); !reflect.DeepEqual(messageIDs(d), []string{"o1"}) || len(d.IdentityChanges) != 0 {
		t.Errorf("the bystander's export reaches Ana: %v", messageIDs(d))
	}
}

// Chains are followed from any link: A→B→C with business-scoped ids regenerated on the
// way (user_changed_user_id), then an erasure by the first number takes everything of
// every identifier.
func testIdentityChain(t *testing.T, s store.Store) {
	personBefore(t, s)
	commit(t, s, numberChange("sys-1", numA, numB, 4))
	commit(t, s, meta.Batch{Contacts: []meta.Contact{waContact(bsuidA, numB, bsuidA, "Ana")}, Messages: []meta.Message{msg("b1", bsuidA, 5)}})
	second := msg("sys-2", bsuidA, 6)
	second.SubjectAlt, second.Type = numB, "system"
	commit(t, s, meta.Batch{
		Messages: []meta.Message{second},
		Identities: []meta.IdentityChange{{Platform: meta.WhatsApp, Channel: ch, MessageID: "sys-2", Type: meta.IdentityChangedUserID,
			OldWaID: numB, OldUserID: bsuidA, NewWaID: numC, NewUserID: bsuidB}},
	})
	commit(t, s, meta.Batch{Contacts: []meta.Contact{waContact(bsuidB, numC, bsuidB, "Ana")}, Messages: []meta.Message{msg("c1", bsuidB, 7)}})
	want := []string{"a1", "b1", "c1", "sys-1", "sys-2"}
	wantContacts := []meta.Contact{waContact(bsuidB, numC, bsuidB, "Ana")}
	for _, id := range []string{numA, numB, numC, bsuidA, bsuidB} {
		d := subjectExport(t, s, id)
		if ids := messageIDs(d); !reflect.DeepEqual(ids, want) {
			t.Errorf("export by %s: messages %v, want %v", id, ids, want)
		}
		if !reflect.DeepEqual(d.Contacts, wantContacts) {
			t.Errorf("export by %s: contacts %+v, want %+v", id, d.Contacts, wantContacts)
		}
	}
	counts, err := s.Erase(context.Background(), store.EraseRequest{Subject: store.Subject{Platform: meta.WhatsApp, ID: numA}, SubjectRef: "hmac:chain"})
	if err != nil {
		t.Fatal(err)
	}
	// Contacts: one row and two identity changes.
	if want := (store.Counts{Contacts: 3, Messages: 5, Statuses: 1, Files: 1}); counts != want {
		t.Errorf("erase counts %+v, want %+v", counts, want)
	}
	noTraceOf(t, s, numA, numB, numC, bsuidA, bsuidB)
}

// The acceptance case of identity continuity: a number change, then an erasure naming
// the NEW number, leaves no record of either number, and the ledger holds neither.
func testEraseByNewNumber(t *testing.T, s store.Store) {
	personBefore(t, s)
	commit(t, s, numberChange("sys-1", numA, numB, 4))
	commit(t, s, meta.Batch{Contacts: []meta.Contact{waContact(numB, numB, "", "Ana")}, Messages: []meta.Message{msg("b1", numB, 5)}})
	counts, err := s.Erase(context.Background(), store.EraseRequest{Subject: store.Subject{Platform: meta.WhatsApp, ID: numB}, SubjectRef: "hmac:new-number"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.Counts{Contacts: 2, Messages: 3, Statuses: 1, Files: 1}); counts != want {
		t.Errorf("erase counts %+v, want %+v", counts, want)
	}
	noTraceOf(t, s, numA, numB)
	d := Export(t, s, nil)
	if ids := messageIDs(d); !reflect.DeepEqual(ids, []string{"o1"}) || len(d.Contacts) != 1 || len(d.Statuses) != 1 {
		t.Errorf("the bystander's records went too: %+v", d)
	}
	if len(d.Erasures) != 1 || d.Erasures[0].SubjectRef != "hmac:new-number" {
		t.Errorf("ledger %+v", d.Erasures)
	}
}

// noTraceOf fails unless no exported byte, in a full export or one by any of ids, holds
// any of ids.
func noTraceOf(t *testing.T, s store.Store, ids ...string) {
	t.Helper()
	var all bytes.Buffer
	for _, f := range append([]*store.Subject{nil}, subjects(ids)...) {
		if err := s.Export(context.Background(), store.Filter{Subject: f}, func(r store.Record) error {
			b, err := json.Marshal(r)
			all.Write(append(b, '\n'))
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if containsAny(all.String(), ids...) {
		t.Errorf("an identifier of the erased person is still exported:\n%s", all.String())
	}
}

func subjects(ids []string) []*store.Subject {
	var out []*store.Subject
	for _, id := range ids {
		out = append(out, &store.Subject{ID: id})
	}
	return out
}

// Every record kind a store exports decodes with the strict decoder, both through
// Record's JSON form (what `ingest-worker export` prints) and for full and subject
// exports.
func testExportStrict(t *testing.T, s store.Store) {
	personBefore(t, s)
	commit(t, s, numberChange("sys-1", numA, numB, 4))
	fb := msg("f1", "psid-1", 5)
	fb.Platform, fb.Channel = meta.Messenger, "fb"
	fb.Reply = &meta.Reply{Kind: "quick_reply", ID: "YES"}
	commit(t, s, meta.Batch{
		Messages: []meta.Message{fb},
		Receipts: []meta.Receipt{{Platform: meta.Messenger, Channel: "fb", Subject: "psid-1", State: meta.StateRead, Watermark: t0}},
		Files:    []meta.File{{Platform: meta.Messenger, Channel: "fb", MessageID: "f1", Subject: "psid-1", Kind: "audio", URL: "https://x/a.mp4"}},
		Leads:    []meta.Lead{tokenLead("optin-strict", "psid-1", 6)},
	})
	if _, err := s.Erase(context.Background(), store.EraseRequest{Subject: store.Subject{ID: "nobody"}, SubjectRef: "hmac:x", Scope: store.ScopeMessages}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range []*store.Subject{nil, {ID: numB}} {
		var out bytes.Buffer
		enc := json.NewEncoder(&out)
		if err := s.Export(context.Background(), store.Filter{Subject: f}, func(r store.Record) error { return enc.Encode(r) }); err != nil {
			t.Fatal(err)
		}
		byKind, err := DecodeExportStrict(out.Bytes())
		if err != nil {
			t.Fatalf("strict decoding of %s", err)
		}
		for k := range byKind {
			seen[k] = true
		}
		for _, v := range byKind[store.KindFile] {
			if fl := v.(*FileLine); fl.File.Kind == "" || fl.LineHeader.Kind != store.KindFile {
				t.Errorf("file line lost its record kind or media kind: %+v", fl)
			}
		}
	}
	for _, k := range Kinds() {
		if !seen[k] {
			t.Errorf("no %s record was exported: the strict decoding did not cover it", k)
		}
	}
	if bad := slices.DeleteFunc(slices.Collect(maps.Keys(seen)), func(k string) bool { return slices.Contains(Kinds(), k) }); len(bad) > 0 {
		t.Errorf("kinds outside the format: %v", bad)
	}
}
