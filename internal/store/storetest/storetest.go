// Package storetest is the conformance suite every store backend runs: the behaviour the
// ingest worker and later erasure work rely on, checked against real databases.
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Opener returns a fresh, empty store for one test; the suite closes it.
type Opener func(t *testing.T) store.Store

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Duplicates", testDuplicates},
		{"StatusFurthestWins", testStatusFurthestWins},
		{"ReceiptWatermark", testReceiptWatermark},
		{"ContactMergeByUserID", testContactMerge},
		{"DeletionAndTombstone", testDeletion},
		{"EraseSubject", testErase},
		{"EraseChannelAndScope", testEraseScoped},
		{"ExportSubject", testExportSubject},
		{"ConcurrentCommits", testConcurrent},
		{"RejectsUnkeyable", testRejects},
		{"IdentityChangeLinksNumbers", testIdentityChangeLinks},
		{"IdentityChangeChain", testIdentityChain},
		{"EraseByNewNumberErasesBoth", testEraseByNewNumber},
		{"ExportIsStrict", testExportStrict},
	}
	tests = append(tests, retentionTests...)
	tests = append(tests, leadTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			defer func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			tc.fn(t, s)
		})
	}
	t.Run("CommitAfterClose", func(t *testing.T) {
		s := open(t)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(context.Background(), &meta.Batch{Messages: []meta.Message{msg("m1", "u1", 1)}}); err == nil {
			t.Fatal("Commit after Close succeeded")
		}
	})
}

var t0 = time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)

const ch = "acme-whatsapp"

func msg(id, subject string, sec int) meta.Message {
	return meta.Message{Platform: meta.WhatsApp, Channel: ch, ID: id, Subject: subject, Direction: meta.Inbound, Type: "text",
		Text: "text of " + id, Timestamp: t0.Add(time.Duration(sec) * time.Second), Raw: json.RawMessage(`{"id":"` + id + `","url":"https://x/?a=1&b=<2>"}`)}
}

func status(id, subject, state string, sec int) meta.Status {
	return meta.Status{Platform: meta.WhatsApp, Channel: ch, MessageID: id, Subject: subject, State: state, Timestamp: t0.Add(time.Duration(sec) * time.Second)}
}

func commit(t *testing.T, s store.Store, b meta.Batch) store.CommitResult {
	t.Helper()
	res, err := s.Commit(context.Background(), &b)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return res
}

// Dump is everything a store exports, decoded.
type Dump struct {
	Contacts []meta.Contact
	Messages []meta.Message
	Statuses []meta.Status
	Receipts []meta.Receipt
	Files    []meta.File
	Erasures []store.Erasure
	// IdentityChanges link a person's old identifiers to new ones.
	IdentityChanges []meta.IdentityChange
	// Leads are referrals and opt-ins (never with their token: export leaves it out).
	Leads []meta.Lead
}

// Export decodes a store's export (all, or one subject's).
func Export(t testing.TB, s store.Store, subject *store.Subject) Dump {
	t.Helper()
	var d Dump
	err := s.Export(context.Background(), store.Filter{Subject: subject}, func(r store.Record) error {
		var target any
		switch r.Kind {
		case store.KindContact:
			d.Contacts = append(d.Contacts, meta.Contact{})
			target = &d.Contacts[len(d.Contacts)-1]
		case store.KindMessage:
			d.Messages = append(d.Messages, meta.Message{})
			target = &d.Messages[len(d.Messages)-1]
		case store.KindStatus:
			d.Statuses = append(d.Statuses, meta.Status{})
			target = &d.Statuses[len(d.Statuses)-1]
		case store.KindReceipt:
			d.Receipts = append(d.Receipts, meta.Receipt{})
			target = &d.Receipts[len(d.Receipts)-1]
		case store.KindFile:
			d.Files = append(d.Files, meta.File{})
			target = &d.Files[len(d.Files)-1]
		case store.KindIdentityChange:
			d.IdentityChanges = append(d.IdentityChanges, meta.IdentityChange{})
			target = &d.IdentityChanges[len(d.IdentityChanges)-1]
		case store.KindLead:
			d.Leads = append(d.Leads, meta.Lead{})
			target = &d.Leads[len(d.Leads)-1]
		case store.KindErasure:
			d.Erasures = append(d.Erasures, store.Erasure{})
			target = &d.Erasures[len(d.Erasures)-1]
		default:
			return fmt.Errorf("unknown kind %q", r.Kind)
		}
		return r.Decode(target)
	})
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	return d
}

func messageIDs(d Dump) []string {
	var ids []string
	for _, m := range d.Messages {
		ids = append(ids, m.ID)
	}
	sort.Strings(ids)
	return ids
}

func testRoundTrip(t *testing.T, s store.Store) {
	in := meta.Batch{
		Contacts: []meta.Contact{{Platform: meta.WhatsApp, Channel: ch, Subject: "15555550142", WaID: "15555550142", Name: "Ana Souza"}},
		Messages: []meta.Message{func() meta.Message {
			m := msg("wamid.A", "15555550142", 1)
			m.Type, m.Text, m.ReplyTo = "image", "caption", "wamid.OUT"
			m.Reaction = &meta.Reaction{MessageID: "wamid.X", Emoji: "\U0001F44D"}
			m.Location = &meta.Location{Latitude: 1.5, Longitude: -2.25, Name: "n"}
			m.Reply = &meta.Reply{Kind: "list_reply", ID: "i", Title: "t", Description: "d"}
			m.Errors = []meta.Error{{Code: 131051, Title: "x", Details: "y"}}
			return m
		}()},
		Statuses: []meta.Status{{Platform: meta.WhatsApp, Channel: ch, MessageID: "wamid.OUT", Subject: "15555550142", State: meta.StateFailed,
			Timestamp: t0, Errors: []meta.Error{{Code: 131047, Title: "Re-engagement message"}}}},
		Receipts: []meta.Receipt{{Platform: meta.Messenger, Channel: "page", Subject: "psid1", State: meta.StateRead, Watermark: t0}},
		Files: []meta.File{{Platform: meta.WhatsApp, Channel: ch, MessageID: "wamid.A", Subject: "15555550142", Kind: "image", MediaID: "123",
			MIMEType: "image/jpeg", SHA256: "abc=", Caption: "caption", URL: "https://x"}},
	}
	res := commit(t, s, in)
	want := store.CommitResult{MessagesNew: 1, StatusesApplied: 1, FilesNew: 1, ContactsUpserted: 1}
	if res != want {
		t.Errorf("CommitResult = %+v, want %+v", res, want)
	}
	got := Export(t, s, nil)
	wantDump := Dump{Contacts: in.Contacts, Messages: in.Messages, Statuses: in.Statuses, Receipts: in.Receipts, Files: in.Files}
	if !reflect.DeepEqual(got, wantDump) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(wantDump, "", " ")
		t.Errorf("export differs from what was committed\n got: %s\nwant: %s", g, w)
	}
}

func testDuplicates(t *testing.T, s store.Store) {
	file := meta.File{Platform: meta.WhatsApp, Channel: ch, MessageID: "m1", Subject: "u1", Kind: "image", MediaID: "9"}
	first := commit(t, s, meta.Batch{Messages: []meta.Message{msg("m1", "u1", 1)}, Files: []meta.File{file}})
	if first.MessagesNew != 1 || first.FilesNew != 1 {
		t.Fatalf("first delivery: %+v", first)
	}
	// A redelivery with changed content must not overwrite or duplicate.
	changed := msg("m1", "u1", 1)
	changed.Text = "tampered"
	again := commit(t, s, meta.Batch{Messages: []meta.Message{changed}, Files: []meta.File{file}})
	if again.MessagesNew != 0 || again.MessagesDuplicate != 1 || again.FilesNew != 0 {
		t.Fatalf("redelivery: %+v", again)
	}
	// A batch with one new message and one redelivered one.
	mixed := commit(t, s, meta.Batch{Messages: []meta.Message{msg("m1", "u1", 1), msg("m2", "u1", 2)}})
	if mixed.MessagesNew != 1 || mixed.MessagesDuplicate != 1 {
		t.Fatalf("mixed batch: %+v", mixed)
	}
	d := Export(t, s, nil)
	if ids := messageIDs(d); !reflect.DeepEqual(ids, []string{"m1", "m2"}) {
		t.Fatalf("stored messages %v", ids)
	}
	if d.Messages[0].Text != "text of m1" || len(d.Files) != 1 {
		t.Fatalf("redelivery changed the stored message or files: %+v %d files", d.Messages[0], len(d.Files))
	}
}

func permutations(in []string) [][]string {
	if len(in) <= 1 {
		return [][]string{append([]string(nil), in...)}
	}
	var out [][]string
	for i := range in {
		rest := append(append([]string(nil), in[:i]...), in[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]string{in[i]}, p...))
		}
	}
	return out
}

func testStatusFurthestWins(t *testing.T, s store.Store) {
	cases := []struct {
		states []string
		want   string
	}{
		{[]string{meta.StateSent, meta.StateDelivered, meta.StateRead}, meta.StateRead},
		{[]string{meta.StateSent, meta.StateFailed}, meta.StateFailed},
		{[]string{meta.StateSent, meta.StateDelivered, meta.StateRead, meta.StatePlayed}, meta.StatePlayed},
	}
	n := 0
	for _, tc := range cases {
		for _, order := range permutations(tc.states) {
			n++
			id := fmt.Sprintf("out-%d", n)
			for i, st := range order {
				commit(t, s, meta.Batch{Statuses: []meta.Status{status(id, "u1", st, meta.StateRank(st)*10+i)}})
			}
			var got *meta.Status
			for _, st := range Export(t, s, nil).Statuses {
				if st.MessageID == id {
					got = &st
				}
			}
			if got == nil || got.State != tc.want || !got.Timestamp.Equal(t0.Add(time.Duration(meta.StateRank(tc.want)*10+indexOf(order, tc.want))*time.Second)) {
				t.Errorf("order %v: stored %+v, want state %s with its own timestamp", order, got, tc.want)
			}
		}
	}
	// The same furthest state twice: the second is stale, not an update.
	res := commit(t, s, meta.Batch{Statuses: []meta.Status{status("out-1", "u1", meta.StateDelivered, 999)}})
	if res.StatusesStale != 1 || res.StatusesApplied != 0 {
		t.Errorf("late delivered after read: %+v", res)
	}
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

func testReceiptWatermark(t *testing.T, s store.Store) {
	r := func(sec int) meta.Receipt {
		return meta.Receipt{Platform: meta.Messenger, Channel: "page", Subject: "psid", State: meta.StateRead, Watermark: t0.Add(time.Duration(sec) * time.Second)}
	}
	commit(t, s, meta.Batch{Receipts: []meta.Receipt{r(20)}})
	commit(t, s, meta.Batch{Receipts: []meta.Receipt{r(10)}})
	got := Export(t, s, nil).Receipts
	if len(got) != 1 || !got[0].Watermark.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("receipts %+v: want one with the later watermark", got)
	}
}

func testContactMerge(t *testing.T, s store.Store) {
	const wa, bsuid = "15555550142", "US.13491208655302741918"
	c := func(subject, waID, userID, name, username string) meta.Contact {
		return meta.Contact{Platform: meta.WhatsApp, Channel: ch, Subject: subject, WaID: waID, UserID: userID, Name: name, Username: username}
	}
	m := msg("m-old", wa, 1)
	commit(t, s, meta.Batch{Contacts: []meta.Contact{c(wa, wa, "", "Ana", "")}, Messages: []meta.Message{m}})
	// A user with a username, arriving with only the business-scoped id.
	commit(t, s, meta.Batch{Contacts: []meta.Contact{c(bsuid, "", bsuid, "", "ana.s")}, Messages: []meta.Message{msg("m-new", bsuid, 2)}})
	if got := len(Export(t, s, nil).Contacts); got != 2 {
		t.Fatalf("before linking: %d contacts, want 2", got)
	}
	// A payload with both ids links them: one contact, keyed by the business-scoped id.
	commit(t, s, meta.Batch{Contacts: []meta.Contact{c(bsuid, wa, bsuid, "Ana Souza", "")}})
	got := Export(t, s, nil).Contacts
	want := []meta.Contact{c(bsuid, wa, bsuid, "Ana Souza", "ana.s")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("contacts after linking = %+v, want %+v", got, want)
	}
	// Seeing the user again by phone number alone neither splits nor duplicates them.
	commit(t, s, meta.Batch{Contacts: []meta.Contact{c(wa, wa, "", "Ana Souza", "")}})
	commit(t, s, meta.Batch{Contacts: []meta.Contact{c(wa, wa, "", "Ana Souza", "")}})
	if got := Export(t, s, nil).Contacts; !reflect.DeepEqual(got, want) {
		t.Fatalf("contacts after a phone-only redelivery = %+v, want %+v", got, want)
	}
	// Either identifier now reaches both messages.
	for _, id := range []string{wa, bsuid} {
		if ids := messageIDs(Export(t, s, &store.Subject{Platform: meta.WhatsApp, ID: id})); !reflect.DeepEqual(ids, []string{"m-new", "m-old"}) {
			t.Errorf("export by %s: messages %v", id, ids)
		}
	}
}

func testDeletion(t *testing.T, s store.Store) {
	ig := func(id string) meta.Message {
		m := msg(id, "igsid", 1)
		m.Platform, m.Channel = meta.Instagram, "ig"
		return m
	}
	del := func(id string) meta.Deletion {
		return meta.Deletion{Platform: meta.Instagram, Channel: "ig", MessageID: id, Timestamp: t0}
	}
	file := meta.File{Platform: meta.Instagram, Channel: "ig", MessageID: "a", Subject: "igsid", Kind: "image", URL: "https://x"}
	commit(t, s, meta.Batch{Messages: []meta.Message{ig("a"), ig("keep")}, Files: []meta.File{file}})
	res := commit(t, s, meta.Batch{Deletions: []meta.Deletion{del("a")}})
	if res.MessagesDeleted != 1 {
		t.Errorf("deletion result %+v", res)
	}
	// Out of order: the unsend arrives before the message; then a redelivery of "a".
	commit(t, s, meta.Batch{Deletions: []meta.Deletion{del("b")}})
	commit(t, s, meta.Batch{Messages: []meta.Message{ig("b"), ig("a")}})
	// Message and unsend in one delivery.
	commit(t, s, meta.Batch{Messages: []meta.Message{ig("c")}, Deletions: []meta.Deletion{del("c")}})
	d := Export(t, s, nil)
	if ids := messageIDs(d); !reflect.DeepEqual(ids, []string{"keep"}) || len(d.Files) != 0 {
		t.Fatalf("after deletions: messages %v, %d files", ids, len(d.Files))
	}
}

func testErase(t *testing.T, s store.Store) {
	const wa, bsuid, other = "15555550142", "US.1", "447700900123"
	commit(t, s, meta.Batch{
		Contacts: []meta.Contact{
			{Platform: meta.WhatsApp, Channel: ch, Subject: bsuid, WaID: wa, UserID: bsuid, Name: "Ana"},
			{Platform: meta.WhatsApp, Channel: ch, Subject: other, WaID: other, Name: "Oliver"},
		},
		Messages: []meta.Message{msg("a1", wa, 1), msg("a2", bsuid, 2), msg("o1", other, 3)},
		Statuses: []meta.Status{status("out-a", wa, meta.StateRead, 4), status("out-o", other, meta.StateRead, 4)},
		Files: []meta.File{
			{Platform: meta.WhatsApp, Channel: ch, MessageID: "a1", Subject: wa, Kind: "image", MediaID: "1"},
			{Platform: meta.WhatsApp, Channel: ch, MessageID: "o1", Subject: other, Kind: "image", MediaID: "2"},
		},
	})
	// A Messenger user whose PSID happens to equal nothing here must be untouched too.
	fb := msg("f1", "psid", 5)
	fb.Platform = meta.Messenger
	commit(t, s, meta.Batch{Messages: []meta.Message{fb}})

	req := store.EraseRequest{Subject: store.Subject{Platform: meta.WhatsApp, ID: wa}, SubjectRef: "hmac:abc", RequestedAt: t0}
	counts, err := s.Erase(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.Counts{Contacts: 1, Messages: 2, Statuses: 1, Files: 1}); counts != want {
		t.Errorf("Erase counts = %+v, want %+v", counts, want)
	}
	d := Export(t, s, nil)
	if ids := messageIDs(d); !reflect.DeepEqual(ids, []string{"f1", "o1"}) {
		t.Errorf("messages left %v", ids)
	}
	if len(d.Contacts) != 1 || d.Contacts[0].Subject != other || len(d.Statuses) != 1 || len(d.Files) != 1 {
		t.Errorf("left after erase: %+v", d)
	}
	if len(d.Erasures) != 1 || d.Erasures[0].SubjectRef != "hmac:abc" || d.Erasures[0].Counts != counts || !d.Erasures[0].RequestedAt.Equal(t0) {
		t.Errorf("ledger %+v", d.Erasures)
	}
	if raw, _ := json.Marshal(d.Erasures); json.Valid(raw) && containsAny(string(raw), wa, bsuid) {
		t.Errorf("ledger holds the identifier: %s", raw)
	}
	// The same person writing again after erasure is stored afresh (nothing may remember
	// that the contact "already exists").
	ana := meta.Contact{Platform: meta.WhatsApp, Channel: ch, Subject: bsuid, WaID: wa, UserID: bsuid, Name: "Ana"}
	commit(t, s, meta.Batch{Contacts: []meta.Contact{ana}})
	if got := Export(t, s, &store.Subject{ID: wa}).Contacts; !reflect.DeepEqual(got, []meta.Contact{ana}) {
		t.Fatalf("contact written after erasure: %+v", got)
	}
	if _, err := s.Erase(context.Background(), store.EraseRequest{Subject: store.Subject{Platform: meta.WhatsApp, ID: wa}}); err != nil {
		t.Fatal(err)
	}
	// Idempotent: a second run finds nothing left.
	again, err := s.Erase(context.Background(), req)
	if err != nil || again != (store.Counts{}) {
		t.Errorf("second erase: %+v %v", again, err)
	}
}

// A DeletionRequest may name one channel and only some kinds of records: exactly those
// go, everything else of the same person stays, and the ledger says what was erased.
func testEraseScoped(t *testing.T, s store.Store) {
	const wa, ch2 = "15555550142", "acme-whatsapp-2"
	on := func(c string, m meta.Message) meta.Message { m.Channel = c; return m }
	file := func(c, id string) meta.File {
		return meta.File{Platform: meta.WhatsApp, Channel: c, MessageID: id, Subject: wa, Kind: "image", MediaID: "m-" + id}
	}
	st2 := status("out-2", wa, meta.StateRead, 4)
	st2.Channel = ch2
	commit(t, s, meta.Batch{
		Contacts: []meta.Contact{
			{Platform: meta.WhatsApp, Channel: ch, Subject: wa, WaID: wa, Name: "Ana"},
			{Platform: meta.WhatsApp, Channel: ch2, Subject: wa, WaID: wa, Name: "Ana"},
		},
		Messages: []meta.Message{msg("a1", wa, 1), on(ch2, msg("b1", wa, 2)), on(ch2, msg("b2", wa, 3))},
		Statuses: []meta.Status{status("out-1", wa, meta.StateRead, 4), st2},
		Files:    []meta.File{file(ch, "a1"), file(ch2, "b1")},
	})
	erase := func(req store.EraseRequest, want store.Counts) {
		t.Helper()
		req.Subject = store.Subject{Platform: meta.WhatsApp, ID: wa}
		req.SubjectRef = "hmac:" + req.Channel + fmt.Sprint(req.Scope.Names())
		got, err := s.Erase(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("erase %s %v: counts %+v, want %+v", req.Channel, req.Scope.Names(), got, want)
		}
	}
	left := func() (contacts, messages, statuses, files []string) {
		d := Export(t, s, nil)
		for _, c := range d.Contacts {
			contacts = append(contacts, c.Channel)
		}
		messages = messageIDs(d)
		for _, st := range d.Statuses {
			statuses = append(statuses, st.MessageID)
		}
		for _, f := range d.Files {
			files = append(files, f.MessageID)
		}
		sort.Strings(contacts)
		sort.Strings(statuses)
		sort.Strings(files)
		return
	}
	check := func(step string, wantC, wantM, wantS, wantF []string) {
		t.Helper()
		c, m, st, f := left()
		if !reflect.DeepEqual(c, wantC) || !reflect.DeepEqual(m, wantM) || !reflect.DeepEqual(st, wantS) || !reflect.DeepEqual(f, wantF) {
			t.Fatalf("after %s: contacts %v messages %v statuses %v files %v; want %v %v %v %v", step, c, m, st, f, wantC, wantM, wantS, wantF)
		}
	}

	// Files of one channel only.
	erase(store.EraseRequest{Channel: ch2, Scope: store.ScopeFiles}, store.Counts{Files: 1})
	check("files of "+ch2, []string{ch, ch2}, []string{"a1", "b1", "b2"}, []string{"out-1", "out-2"}, []string{"a1"})
	// Messages (with their statuses) of every channel; contacts and files stay.
	erase(store.EraseRequest{Scope: store.ScopeMessages}, store.Counts{Messages: 3, Statuses: 2})
	check("messages", []string{ch, ch2}, nil, nil, []string{"a1"})
	// The contact of one channel.
	erase(store.EraseRequest{Channel: ch, Scope: store.ScopeContacts}, store.Counts{Contacts: 1})
	check("contact of "+ch, []string{ch2}, nil, nil, []string{"a1"})
	// Everything that is left (the zero scope is every kind).
	erase(store.EraseRequest{}, store.Counts{Contacts: 1, Files: 1})
	check("everything", nil, nil, nil, nil)

	d := Export(t, s, nil)
	type entry struct {
		channel string
		scope   []string
		counts  store.Counts
	}
	var got []entry
	for _, e := range d.Erasures {
		got = append(got, entry{e.Channel, e.Scope, e.Counts})
	}
	want := []entry{
		{ch2, []string{"Files"}, store.Counts{Files: 1}},
		{"", []string{"Messages"}, store.Counts{Messages: 3, Statuses: 2}},
		{ch, []string{"Contacts"}, store.Counts{Contacts: 1}},
		{"", []string{"Messages", "Contacts", "Files"}, store.Counts{Contacts: 1, Files: 1}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ledger %+v, want %+v", got, want)
	}
	if raw, _ := json.Marshal(d.Erasures); containsAny(string(raw), wa) {
		t.Errorf("ledger holds the identifier: %s", raw)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if len(sub) > 0 && len(s) >= len(sub) {
			for i := 0; i+len(sub) <= len(s); i++ {
				if s[i:i+len(sub)] == sub {
					return true
				}
			}
		}
	}
	return false
}

func testExportSubject(t *testing.T, s store.Store) {
	commit(t, s, meta.Batch{
		Contacts: []meta.Contact{{Platform: meta.WhatsApp, Channel: ch, Subject: "u1", WaID: "u1"}, {Platform: meta.WhatsApp, Channel: ch, Subject: "u2", WaID: "u2"}},
		Messages: []meta.Message{msg("m1", "u1", 1), msg("m2", "u2", 2)},
		Statuses: []meta.Status{status("s1", "u1", meta.StateSent, 1), status("s2", "u2", meta.StateSent, 1)},
	})
	d := Export(t, s, &store.Subject{ID: "u1"})
	if len(d.Contacts) != 1 || d.Contacts[0].Subject != "u1" || !reflect.DeepEqual(messageIDs(d), []string{"m1"}) ||
		len(d.Statuses) != 1 || d.Statuses[0].MessageID != "s1" || len(d.Erasures) != 0 {
		t.Fatalf("subject export %+v", d)
	}
	if d := Export(t, s, &store.Subject{ID: "nobody"}); len(d.Messages)+len(d.Contacts)+len(d.Statuses) != 0 {
		t.Fatalf("export of unknown subject returned %+v", d)
	}
}

func testConcurrent(t *testing.T, s store.Store) {
	const workers, each = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				b := meta.Batch{Messages: []meta.Message{msg(id, fmt.Sprintf("u%d", w), i)}, Statuses: []meta.Status{status("out-"+id, "u", meta.StateSent, i)}}
				if _, err := s.Commit(context.Background(), &b); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent commit: %v", err)
	}
	d := Export(t, s, nil)
	if len(d.Messages) != workers*each || len(d.Statuses) != workers*each {
		t.Fatalf("stored %d messages, %d statuses; want %d each", len(d.Messages), len(d.Statuses), workers*each)
	}
}

func testRejects(t *testing.T, s store.Store) {
	bad := []meta.Batch{
		{Messages: []meta.Message{{Platform: meta.WhatsApp, Subject: "u"}}},
		{Statuses: []meta.Status{{Platform: meta.WhatsApp, MessageID: "x", State: "deleted"}}},
		{Contacts: []meta.Contact{{Platform: meta.WhatsApp}}},
	}
	for i := range bad {
		if _, err := s.Commit(context.Background(), &bad[i]); err == nil {
			t.Errorf("batch %d accepted", i)
		}
	}
	if got := Export(t, s, nil); len(got.Messages)+len(got.Statuses)+len(got.Contacts) != 0 {
		t.Fatalf("rejected batches left records: %+v", got)
	}
}
