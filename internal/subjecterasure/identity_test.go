package subjecterasure_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
)

// Alice moves to a new number (WhatsApp's user_changed_number notice, as the parser
// stores it) and writes from it; a DeletionRequest naming only the NEW number erases
// what she wrote from both, and nothing of Bob's.
func TestADeletionRequestByTheNewNumberErasesTheOldOne(t *testing.T) {
	const aliceNew = "15550100009"
	ns := "tenant-erase-new-number"
	setup(t, ns)
	st := openStore(t)
	seed(t, st)
	at := time.Date(2026, 5, 1, 11, 0, 0, 0, time.UTC)
	notice := meta.Message{Platform: meta.WhatsApp, Channel: "wa", ID: "wamid.sys", Subject: alice, Direction: meta.Inbound,
		Type: "system", Text: "User Person changed from " + alice + " to " + aliceNew, Timestamp: at, Raw: []byte(`{"id":"wamid.sys"}`)}
	after := meta.Message{Platform: meta.WhatsApp, Channel: "wa", ID: "wamid.after", Subject: aliceNew, Direction: meta.Inbound,
		Type: "text", Text: "it's me, new number", Timestamp: at.Add(time.Minute), Raw: []byte(`{"id":"wamid.after"}`)}
	if _, err := st.Commit(ctx, &meta.Batch{
		Messages: []meta.Message{notice},
		Identities: []meta.IdentityChange{{Platform: meta.WhatsApp, Channel: "wa", MessageID: "wamid.sys",
			Type: meta.IdentityChangedNumber, OldWaID: alice, NewWaID: aliceNew, Timestamp: at}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(ctx, &meta.Batch{Messages: []meta.Message{after}}); err != nil {
		t.Fatal(err)
	}
	bobBefore := exported(t, st, bob)
	// Alice: one contact (under the new number), four messages, the change.
	if n := len(exported(t, st, alice)); n != 7 {
		t.Fatalf("before: %d records reach Alice's old number, want 7", n)
	}

	dr := file(t, ns, "ticket-new-number", "+1 555-010-0009")
	p := &subjecterasure.Processor{
		Client: workerClient(t, ns, []platformv1.DeletionRequest{*dr}), Namespace: ns, Store: st,
		Clock: clocktesting.NewFakeClock(time.Date(2026, 5, 3, 12, 0, 0, 0, time.UTC)),
	}
	if err := p.ProcessPending(ctx); err != nil {
		t.Fatalf("process: %v", err)
	}
	got := get(t, dr)
	if got.Status.Phase != platformv1.DeletionCompleted {
		t.Fatalf("phase %q, want Completed (%v)", got.Status.Phase, got.Status.Conditions)
	}
	// Contacts: her contact row and the identity change.
	if e := got.Status.Erased; e == nil || e.Messages != 5 || e.Contacts != 2 {
		t.Fatalf("erased counts %+v, want 5 messages and 2 contact records", e)
	}
	for _, who := range []string{alice, aliceNew} {
		if left := exported(t, st, who); len(left) != 0 {
			t.Fatalf("%d records still reach %s", len(left), who)
		}
	}
	if kept := exported(t, st, bob); len(kept) != len(bobBefore) {
		t.Fatalf("Bob has %d records, want %d", len(kept), len(bobBefore))
	}
	if raw := fmt.Sprintf("%+v", got.Status); strings.Contains(raw, alice) || strings.Contains(raw, aliceNew) {
		t.Fatalf("the status holds a number: %s", raw)
	}
}
