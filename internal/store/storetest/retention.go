package storetest

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// retentionTests are the conformance tests of Store.Prune.
var retentionTests = []struct {
	name string
	fn   func(*testing.T, store.Store)
}{
	{"PruneByOwnTimestampWithStatusesReactionsFiles", testPruneByAge},
	{"PruneContactsWithNothingLeft", testPruneContacts},
	{"PruneInBoundedBatches", testPruneBatches},
	{"PruneIdentityChangesWithTheirSystemMessage", testPruneIdentityChanges},
}

// The retention age and the cutoff of a run at "now": the caller (the worker) computes
// cutoff = now - age from its clock; the store deletes strictly before it.
const maxAge = 30 * 24 * time.Hour

var (
	now    = t0.Add(maxAge)
	cutoff = now.Add(-maxAge) // == t0
)

// at is a time relative to the cutoff, in seconds: negative is older than the age.
func at(sec int) time.Time { return cutoff.Add(time.Duration(sec) * time.Second) }

func aged(id, subject string, sec int) meta.Message {
	m := msg(id, subject, 0)
	m.Timestamp = at(sec)
	return m
}

func prune(t *testing.T, s store.Store, limit int) store.Pruned {
	t.Helper()
	p, err := s.Prune(context.Background(), store.PruneRequest{Before: cutoff, Limit: limit})
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	return p
}

// sortedIDs lists each record's id, sorted.
func sortedIDs[T any](recs []T, id func(T) string) []string {
	var ids []string
	for _, r := range recs {
		ids = append(ids, id(r))
	}
	sort.Strings(ids)
	return ids
}

func statusIDs(d Dump) []string {
	return sortedIDs(d.Statuses, func(s meta.Status) string { return s.MessageID })
}

func fileIDs(d Dump) []string {
	return sortedIDs(d.Files, func(f meta.File) string { return f.MessageID })
}

// A message one second past the age is gone with its statuses, reactions and files; one
// second before it stays with its own; so do statuses and receipts by their own time.
func testPruneByAge(t *testing.T, s store.Store) {
	const u = "15555550142"
	file := func(id string) meta.File {
		return meta.File{Platform: meta.WhatsApp, Channel: ch, MessageID: id, Subject: u, Kind: "image", MediaID: "media-" + id}
	}
	reaction := aged("react-old", u, 3600) // younger than the age, but to a message that goes
	reaction.Type, reaction.Text, reaction.Reaction = "reaction", "", &meta.Reaction{MessageID: "old", Emoji: "\U0001F44D"}
	keepReaction := aged("react-young", u, 3600)
	keepReaction.Type, keepReaction.Text, keepReaction.Reaction = "reaction", "", &meta.Reaction{MessageID: "young", Emoji: "\U0001F44D"}
	stOf := func(id string, sec int) meta.Status {
		st := status(id, u, meta.StateRead, 0)
		st.Timestamp = at(sec)
		return st
	}
	receipt := func(channel string, sec int) meta.Receipt {
		return meta.Receipt{Platform: meta.Messenger, Channel: channel, Subject: "psid", State: meta.StateRead, Watermark: at(sec)}
	}
	commit(t, s, meta.Batch{
		Contacts: []meta.Contact{{Platform: meta.WhatsApp, Channel: ch, Subject: u, WaID: u, Name: "Ana"}},
		Messages: []meta.Message{aged("old", u, -1), aged("young", u, 1), aged("edge", u, 0), reaction, keepReaction},
		Files:    []meta.File{file("old"), file("young")},
		Statuses: []meta.Status{
			stOf("old", 5),        // the message's status: goes with it although recent
			stOf("young", 5),      // stays
			stOf("out-old", -1),   // a sent message not stored: goes by its own time
			stOf("out-young", 1),  // stays
			stOf("react-old", 10), // the reaction's status goes with the reaction
		},
		Receipts: []meta.Receipt{receipt("page-old", -1), receipt("page-young", 1)},
	})

	got := prune(t, s, 100)
	want := store.Pruned{Counts: store.Counts{Messages: 2, Statuses: 4, Files: 1}}
	if got != want {
		t.Errorf("Prune = %+v, want %+v", got, want)
	}
	d := Export(t, s, nil)
	if ids := messageIDs(d); !reflect.DeepEqual(ids, []string{"edge", "react-young", "young"}) {
		t.Errorf("messages left %v, want edge, react-young, young", ids)
	}
	if ids := statusIDs(d); !reflect.DeepEqual(ids, []string{"out-young", "young"}) {
		t.Errorf("statuses left %v", ids)
	}
	if ids := fileIDs(d); !reflect.DeepEqual(ids, []string{"young"}) {
		t.Errorf("files left %v", ids)
	}
	if len(d.Receipts) != 1 || d.Receipts[0].Channel != "page-young" {
		t.Errorf("receipts left %+v", d.Receipts)
	}
	if len(d.Contacts) != 1 {
		t.Errorf("the contact with messages left was pruned: %+v", d.Contacts)
	}
	// Nothing older is left: a second run deletes nothing.
	if again := prune(t, s, 100); again != (store.Pruned{}) {
		t.Errorf("second Prune = %+v, want nothing", again)
	}
}

// A contact goes with its last record, whichever of its identifiers the records were
// filed under; a contact with anything left, or that no pruned record belonged to, stays.
func testPruneContacts(t *testing.T, s store.Store) {
	const wa, bsuid, gone, fresh, other = "15555550142", "US.1", "447700900123", "4915100000000", "33600000000"
	ana := meta.Contact{Platform: meta.WhatsApp, Channel: ch, Subject: bsuid, WaID: wa, UserID: bsuid, Name: "Ana"}
	oliver := meta.Contact{Platform: meta.WhatsApp, Channel: ch, Subject: gone, WaID: gone, Name: "Oliver"}
	// The same number in another channel, with a young message there: another contact.
	otherChannel := meta.Contact{Platform: meta.WhatsApp, Channel: "other", Subject: gone, WaID: gone, Name: "Oliver"}
	young := aged("o-young", gone, 1)
	young.Channel = "other"
	commit(t, s, meta.Batch{
		Contacts: []meta.Contact{ana, oliver, otherChannel,
			{Platform: meta.WhatsApp, Channel: ch, Subject: fresh, WaID: fresh, Name: "New lead"},
			{Platform: meta.WhatsApp, Channel: ch, Subject: other, WaID: other, Name: "Only a status"},
		},
		// Ana's old messages are filed under her number, her young one under her
		// business-scoped id: she stays. Oliver has only old messages: he goes.
		Messages: []meta.Message{aged("a-old", wa, -10), aged("a-young", bsuid, 10), aged("o-old", gone, -10), young},
		// The last record of "other" is an old status of a message sent to them.
		Statuses: []meta.Status{func() meta.Status { st := status("out", other, meta.StateRead, 0); st.Timestamp = at(-5); return st }()},
	})
	got := prune(t, s, 100)
	if want := (store.Counts{Messages: 2, Statuses: 1, Contacts: 2}); got.Counts != want {
		t.Errorf("Prune counts = %+v, want %+v", got.Counts, want)
	}
	d := Export(t, s, nil)
	var left []string
	for _, c := range d.Contacts {
		left = append(left, c.Channel+"/"+c.Subject)
	}
	sort.Strings(left)
	want := []string{ch + "/" + bsuid, ch + "/" + fresh, "other/" + gone}
	sort.Strings(want)
	if !reflect.DeepEqual(left, want) {
		t.Errorf("contacts left %v, want %v", left, want)
	}
	// The person writing again is stored afresh: nothing remembers the pruned contact.
	commit(t, s, meta.Batch{Contacts: []meta.Contact{oliver}, Messages: []meta.Message{aged("o-new", gone, 20)}})
	if got := Export(t, s, &store.Subject{Platform: meta.WhatsApp, ID: gone}).Contacts; len(got) != 2 {
		t.Errorf("contacts of a returning person: %+v, want both channels", got)
	}
}

// Each call deletes at most Limit messages and says whether there is more; deliveries
// commit between the batches.
func testPruneBatches(t *testing.T, s store.Store) {
	if _, err := s.Prune(context.Background(), store.PruneRequest{Before: cutoff}); !errors.Is(err, store.ErrPruneLimit) {
		t.Errorf("Prune without a limit: %v, want ErrPruneLimit", err)
	}
	var old []meta.Message
	for i := range 7 {
		old = append(old, aged("m"+string(rune('a'+i)), "u1", -100+i))
	}
	commit(t, s, meta.Batch{Messages: old})
	var batches []store.Pruned
	for i := range 10 {
		p := prune(t, s, 3)
		batches = append(batches, p)
		// Ingest goes on between batches.
		commit(t, s, meta.Batch{Messages: []meta.Message{aged("new"+string(rune('a'+i)), "u1", 100)}})
		if !p.More {
			break
		}
	}
	var n []int
	var more []bool
	for _, b := range batches {
		n = append(n, b.Counts.Messages)
		more = append(more, b.More)
	}
	if !reflect.DeepEqual(n, []int{3, 3, 1}) || !reflect.DeepEqual(more, []bool{true, true, false}) {
		t.Errorf("batches deleted %v messages, more %v; want [3 3 1], [true true false]", n, more)
	}
	d := Export(t, s, nil)
	if ids := messageIDs(d); len(ids) != 3 || ids[0] != "newa" {
		t.Errorf("messages left %v, want the three committed between batches", ids)
	}
}

// Records as a store from before retention held them (no statuses.ts, no
// messages.reacts_to): a message one second past the age, a younger reaction to it, a
// young message, and two statuses of sent messages whose times are only in their
// documents. Backends insert them with their own SQL (ts in milliseconds), open the
// store, and call CheckPrunesMigrated.
var (
	MigratedMessages = []struct {
		ID  string
		TS  int64
		Doc string
	}{
		{"old", at(-1).UnixMilli(), `{"platform":"WhatsApp","channel":"c","id":"old","subject":"u","direction":"inbound","type":"text","timestamp":"` + at(-1).Format(time.RFC3339) + `"}`},
		{"react", at(3600).UnixMilli(), `{"platform":"WhatsApp","channel":"c","id":"react","subject":"u","direction":"inbound","type":"reaction","timestamp":"` + at(3600).Format(time.RFC3339) + `","reaction":{"messageID":"old","emoji":"x"}}`},
		{"young", at(1).UnixMilli(), `{"platform":"WhatsApp","channel":"c","id":"young","subject":"u","direction":"inbound","type":"text","timestamp":"` + at(1).Format(time.RFC3339) + `"}`},
	}
	MigratedStatuses = []struct{ ID, Doc string }{
		{"out-old", `{"platform":"WhatsApp","channel":"c","messageID":"out-old","subject":"u","state":"read","timestamp":"` + at(-1).Format(time.RFC3339) + `"}`},
		{"out-young", `{"platform":"WhatsApp","channel":"c","messageID":"out-young","subject":"u","state":"read","timestamp":"` + at(1).Format(time.RFC3339) + `"}`},
	}
)

// CheckPrunesMigrated checks that retention reaches records stored before it existed.
func CheckPrunesMigrated(t *testing.T, s store.Store) {
	t.Helper()
	got := prune(t, s, 100)
	if want := (store.Counts{Messages: 2, Statuses: 1}); got.Counts != want {
		t.Errorf("Prune counts = %+v, want %+v", got.Counts, want)
	}
	d := Export(t, s, nil)
	if ids := messageIDs(d); !reflect.DeepEqual(ids, []string{"young"}) {
		t.Errorf("messages left %v, want young", ids)
	}
	if ids := statusIDs(d); !reflect.DeepEqual(ids, []string{"out-young"}) {
		t.Errorf("statuses left %v, want out-young", ids)
	}
}

// A number change is as old as the system message that announced it: past the age the
// link between the two numbers goes with it (it holds both numbers), and the person's
// contact goes once nothing else of theirs is left; a younger change stays and still
// links the numbers.
func testPruneIdentityChanges(t *testing.T, s store.Store) {
	old := numberChange("sys-old", numA, numB, 0)
	old.Messages[0].Timestamp, old.Identities[0].Timestamp = at(-1), at(-1)
	young := numberChange("sys-young", bystander, numC, 0)
	young.Messages[0].Timestamp, young.Identities[0].Timestamp = at(1), at(1)
	commit(t, s, meta.Batch{
		Contacts: []meta.Contact{waContact(numA, numA, "", "Ana"), waContact(bystander, bystander, "", "Oliver")},
		Messages: []meta.Message{aged("a-old", numA, -5)},
	})
	commit(t, s, old)
	commit(t, s, young)

	got := prune(t, s, 100)
	if want := (store.Counts{Messages: 2, Contacts: 2}); got.Counts != want {
		t.Errorf("Prune counts = %+v, want %+v (the change and Ana's contact)", got.Counts, want)
	}
	d := Export(t, s, nil)
	if len(d.IdentityChanges) != 1 || d.IdentityChanges[0].MessageID != "sys-young" {
		t.Errorf("identity changes left %+v, want only sys-young", d.IdentityChanges)
	}
	for _, id := range []string{numA, numB} {
		if e := subjectExport(t, s, id); len(e.Messages)+len(e.Contacts)+len(e.IdentityChanges) != 0 {
			t.Errorf("export by %s after retention: %+v, want nothing", id, e)
		}
	}
	if e := subjectExport(t, s, bystander); len(e.IdentityChanges) != 1 || len(e.Messages) != 1 {
		t.Errorf("the younger change no longer links its numbers: %+v", e)
	}
}
