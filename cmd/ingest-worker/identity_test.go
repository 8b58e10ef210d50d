package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/ingest"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
)

// The channels of the identity test: the WhatsApp number of the other tests and a
// Facebook Page (its read receipts are the one record kind WhatsApp does not make).
const identityChannelsYAML = channelsYAML + `  - name: fb
    platform: Messenger
    messenger: {pageID: "104857600123456"}
    appSecret: ` + secret + `
    verifyToken: tenant-a-verify-fb
`

// Ana's numbers in the fixtures: the one she writes from, and the one she moves to
// (testdata/extra/whatsapp-system-user-changed-number.json).
const anaOld, anaNew = "15555550142", "15555550143"

func fixture(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "internal", "meta", "testdata", path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func postSigned(t *testing.T, w *worker, channel string, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+w.addr+"/webhooks/meta/"+channel, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(meta.SignatureHeader, meta.Sign([]byte(secret), body))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("delivery to %s: %d\n%s", channel, resp.StatusCode, w.log())
	}
}

// runExport runs the real `ingest-worker export` and decodes every line strictly.
func runExport(t *testing.T, env []string, args ...string) ([]byte, map[string][]any) {
	t.Helper()
	cmd := exec.Command(workerBinary(t), append([]string{"export"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("export %v: %v", args, err)
	}
	byKind, err := storetest.DecodeExportStrict(out)
	if err != nil {
		t.Fatalf("export %v is not the documented format: %v\n%s", args, err, out)
	}
	return out, byKind
}

func exportedMessageIDs(byKind map[string][]any) []string {
	var ids []string
	for _, v := range byKind[store.KindMessage] {
		ids = append(ids, v.(*storetest.MessageLine).ID)
	}
	slices.Sort(ids)
	return ids
}

// A WhatsApp user changes number; the worker stores the change it receives, signed, over
// HTTP; an export by either number returns both numbers' records, in the documented
// strict format; an erasure naming the NEW number (as a DeletionRequest's subject Secret
// would hold it, normalized and hashed by subjecterasure) leaves no record of either
// number in any export, and the ledger holds neither. On both store backends.
// The two numbers are one contact, keyed by the new number.
func TestNumberChangeThenErasureByNewNumber(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) {
		dataDir := filepath.Join(t.TempDir(), "data")
		numberChangeThenErasure(t, nil, []string{"--data-dir", dataDir}, dataDir, "")
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		if err := pgtest.CheckServer(); err != nil {
			t.Fatal(err)
		}
		dsn := pgtest.FreshDatabase(t)
		numberChangeThenErasure(t, []string{envPostgresDSN + "=" + dsn}, []string{"--store", "postgres"}, "", dsn)
	})
}

func numberChangeThenErasure(t *testing.T, env, storeArgs []string, dataDir, dsn string) {
	channels := filepath.Join(t.TempDir(), "channels.yaml")
	if err := os.WriteFile(channels, []byte(identityChannelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWorkerWith(t, env, append(storeArgs, "--channels", channels)...)
	postSigned(t, w, "wa", fixture(t, "fixtures/whatsapp-image.json"))       // contact, message, file
	postSigned(t, w, "wa", fixture(t, "fixtures/whatsapp-status-read.json")) // status
	postSigned(t, w, "wa", fixture(t, "extra/whatsapp-system-user-changed-number.json"))
	postSigned(t, w, "wa", delivery(anaNew, "wamid.AFTER-CHANGE-1"))
	postSigned(t, w, "wa", delivery("447700900123", "wamid.BYSTANDER-1"))
	postSigned(t, w, "fb", fixture(t, "fixtures/messenger-delivery-and-read-batch.json")) // receipts
	postSigned(t, w, "fb", fixture(t, "extra/messenger-optin-recurring.json"))            // a lead, with a token

	_, full := runExport(t, env, storeArgs...)
	for _, k := range storetest.Kinds() {
		if len(full[k]) == 0 && k != store.KindErasure {
			t.Errorf("the full export has no %s record: the strict decoding did not cover it", k)
		}
	}
	// The lead says a notification token exists; no export carries the token.
	if out, _ := runExport(t, env, storeArgs...); bytes.Contains(out, []byte("NMT-SECRET")) || !bytes.Contains(out, []byte(`"hasToken":true`)) {
		t.Errorf("the full export shows the notification token, or not that one exists:\n%s", out)
	}
	var anaMessages []string
	for _, id := range []string{anaOld, anaNew, "+1 (555) 555-0143"} {
		_, byKind := runExport(t, env, append(storeArgs, "--subject", subjecterasure.Normalize(platformv1.PlatformWhatsApp, id))...)
		got := exportedMessageIDs(byKind)
		if len(got) != 3 || !slices.Contains(got, "wamid.AFTER-CHANGE-1") || !slices.Contains(got, "wamid.EXTRA-SYSTEM-NUMBER-1") ||
			len(byKind[store.KindIdentityChange]) != 1 || len(byKind[store.KindContact]) != 1 || len(byKind[store.KindFile]) != 1 {
			t.Fatalf("export by %s: messages %v, %d identity changes, %d contacts, %d files", id,
				got, len(byKind[store.KindIdentityChange]), len(byKind[store.KindContact]), len(byKind[store.KindFile]))
		}
		anaMessages = got
		if c := byKind[store.KindContact][0].(*storetest.ContactLine); c.Subject != anaNew || c.WaID != anaNew || c.Name == "" {
			t.Errorf("export by %s: contact %+v, want one contact under the new number", id, c.Contact)
		}
	}

	// The worker goes (SIGTERM: it drains and closes its store), then the erasure runs as
	// the worker's DeletionRequest processor runs it: Store.Erase with the normalized
	// identifier and its keyed hash.
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-w.done; err != nil {
		t.Fatalf("worker exit: %v\n%s", err, w.log())
	}
	st, err := ingest.OpenStore(context.Background(), dataDir, dsn, false, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	subject := subjecterasure.Normalize(platformv1.PlatformWhatsApp, "+1 555-555-0143")
	ref := subjecterasure.SubjectRef([]byte("tenant-subject-key"), platformv1.PlatformWhatsApp, subject)
	counts, err := st.Erase(context.Background(), store.EraseRequest{Subject: store.Subject{Platform: meta.WhatsApp, ID: subject}, SubjectRef: ref})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if counts.Messages != len(anaMessages) || counts.Files != 1 || counts.Statuses != 1 || counts.Contacts != 2 {
		t.Errorf("erased %+v: want %d messages, 1 file, 1 status, 1 contact and 1 identity change", counts, len(anaMessages))
	}

	out, full := runExport(t, env, storeArgs...)
	for _, id := range []string{anaOld, anaNew} {
		if bytes.Contains(out, []byte(id)) {
			t.Errorf("the full export still holds %s after the erasure:\n%s", id, out)
		}
		if o, _ := runExport(t, env, append(storeArgs, "--subject", id)...); len(o) != 0 {
			t.Errorf("export --subject %s after the erasure:\n%s", id, o)
		}
	}
	if got := exportedMessageIDs(full); !slices.Contains(got, "wamid.BYSTANDER-1") {
		t.Errorf("the bystander's message went too: %v", got)
	}
	if e := full[store.KindErasure]; len(e) != 1 || e[0].(*storetest.ErasureLine).SubjectRef != ref {
		t.Errorf("ledger %v, want one entry with the keyed hash", e)
	}
}
