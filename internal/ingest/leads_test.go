package ingest

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// noCustomerContent are the fixtures acknowledged without being stored, each with the
// reason a CRM would not keep it (docs/ingest-worker.md, "Event types").
var noCustomerContent = map[string]string{
	"whatsapp-account-update-account-deleted.json": "an account lifecycle notice: no end user in it",
	"whatsapp-value-level-errors.json":             "an account-level error: no end user in it",
	"instagram-mention-in-comment.json":            "only the ids of a comment and a post; no author, no text",
}

// unstoredKind sums omniflow_ingest_events_ignored_total{reason="unstored_kind"}.
func unstoredKind(t *testing.T, vec *prometheus.CounterVec) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	go func() { vec.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "reason" && l.GetValue() == ReasonUnstoredKind {
				sum += d.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// Every fixture that carries something a customer said or did is stored through the
// real HTTP path: none of it is acknowledged as an event kind the worker does not keep.
func TestFixturesWithCustomerContentAreStored(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	extra, _ := filepath.Glob(filepath.Join(extraDir, "*.json"))
	if len(files) < 30 || len(extra) < 20 {
		t.Fatalf("found %d shared and %d extra fixtures", len(files), len(extra))
	}
	for _, f := range append(files, extra...) {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			if code := e.postSigned(channelFor(name), readFile(t, f)); code != 200 {
				t.Fatalf("POST = %d", code)
			}
			got := unstoredKind(t, e.m.ignored)
			if _, exempt := noCustomerContent[name]; exempt {
				if got == 0 {
					t.Fatalf("listed as not stored, yet nothing was counted unstored_kind: update the list")
				}
				return
			}
			if got != 0 {
				t.Errorf("ignored{reason=unstored_kind} = %v, want 0", got)
			}
		})
	}
}

// Postbacks without a Meta id get one derived from every field: two that share sender,
// time and payload but differ in title or referral are two records, and a redelivery
// of either is still absorbed.
func TestPostbacksWithoutMidDoNotCollide(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	item := func(title, referral string) []byte {
		return []byte(fmt.Sprintf(`{"object":"page","entry":[{"id":"104857600123456","time":1781101000000,"messaging":[{"sender":{"id":"6098765432109876"},`+
			`"recipient":{"id":"104857600123456"},"timestamp":1781101000600,"postback":{"title":%q,"payload":"GET_STARTED"%s}}]}]}`, title, referral))
	}
	bodies := [][]byte{
		item("Get Started", ""),
		item("Start", ""),
		item("Get Started", `,"referral":{"ref":"flyer-porto","source":"SHORTLINK","type":"OPEN_THREAD"}`),
		item("Get Started", `,"referral":{"ref":"flyer-lisbon","source":"SHORTLINK","type":"OPEN_THREAD"}`),
	}
	for _, b := range append(bodies, bodies[0], bodies[2]) {
		if code := e.postSigned("page", b); code != 200 {
			t.Fatalf("POST = %d", code)
		}
	}
	d := e.dump()
	if len(d.Messages) != 4 {
		t.Fatalf("stored %d postbacks, want 4: %+v", len(d.Messages), d.Messages)
	}
	if len(d.Leads) != 2 || d.Leads[0].Ref == d.Leads[1].Ref {
		t.Fatalf("stored leads %+v, want the two referrals", d.Leads)
	}
	if got := counterValue(t, e.m.leads.WithLabelValues("Messenger")); got != 2 {
		t.Errorf("omniflow_ingest_leads_stored_total{platform=Messenger} = %v, want 2 (redeliveries not counted)", got)
	}
}

// A recurring notification token is kept for the business and shown to nobody: not in
// the logs at full verbosity, not in an export of the subject, which says only that a
// token exists.
func TestNotificationTokenNeitherLoggedNorExported(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	const token = "NMT-SECRET-9d1e7a40c2b84f16"
	if code := e.postSigned("page", readFile(t, filepath.Join(extraDir, "messenger-optin-recurring.json"))); code != 200 {
		t.Fatalf("POST = %d", code)
	}
	if strings.Contains(e.logs.String(), token) {
		t.Fatal("the logs carry the notification token")
	}
	d := e.dump()
	if len(d.Leads) != 1 || !d.Leads[0].HasToken || d.Leads[0].Token != "" {
		t.Fatalf("exported lead %+v: want hasToken and no token", d.Leads)
	}
	got, err := e.store.LeadToken(t.Context(), meta.Messenger, d.Leads[0].ID)
	if err != nil || string(got) != token {
		t.Fatalf("stored token = %v, %v", got, err)
	}
	if s := fmt.Sprintf("%v %+v %#v %s", got, d.Leads[0], got, got); strings.Contains(s, token) {
		t.Fatalf("a printed token shows its value: %s", s)
	}
}
