package main

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Fixture strings that must never be at rest in clear once the worker has a key.
const (
	encText = "sealed-fixture-text-the-size-38-please"
	encName = "Ximena Encrypted-Fixture"
	encWaID = "4479001234567"
	encMsg  = "wamid.ENCFIXTURE0001"
)

func encDelivery(id, text string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"109876543210987","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001234","phone_number_id":"123456789012345"},"contacts":[{"profile":{"name":%q},"wa_id":%q}],"messages":[{"from":%q,"id":%q,"timestamp":"1781100000","type":"text","text":{"body":%q}}]}}]}]}`,
		encName, encWaID, encWaID, id, text))
}

// keyFile writes a new ring as `kubectl get secret -o jsonpath='{.data}'` prints a key
// Secret's data (base64 values), and returns its path.
func keyFile(t *testing.T, dir, name string) string {
	t.Helper()
	data, err := datakey.NewSecretData(rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// atRest is every byte under dir: the database, its WAL, the files.
func atRest(t *testing.T, dir string) []byte {
	t.Helper()
	var all []byte
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		all = append(all, b...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func stop(t *testing.T, w *worker) {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-w.done; err != nil {
		t.Fatalf("worker exit: %v\n%s", err, w.log())
	}
}

// tryExport runs `ingest-worker export` and returns its output and error output.
func tryExport(t *testing.T, dataDir string, extra ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(workerBinary(t), append([]string{"export", "--data-dir", dataDir}, extra...)...)
	cmd.Env = append(os.Environ(), envDataKeySecret+"=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// startFails runs `ingest-worker serve` and expects it to exit before it is ready; it
// returns the log.
func startFails(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(workerBinary(t), append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("the worker started and stopped cleanly; want it refused:\n%s", logs.String())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the worker did not exit:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), `"msg":"Ready"`) {
		t.Fatalf("the worker became ready before it refused:\n%s", logs.String())
	}
	return logs.String()
}

// Issue 17, over real HTTP and real SQLite: a worker with a key file seals what it
// stores (no fixture string at rest), export with the same key reads it all back,
// export without it or with another tenant's key fails with the reason, and a worker
// started over that store with another key, or with none, refuses to start.
func TestWorkerWithAKeySealsAndOnlyThatKeyReadsBack(t *testing.T) {
	dir := t.TempDir()
	dataDir, chFile := filepath.Join(dir, "data"), filepath.Join(dir, "channels.yaml")
	if err := os.WriteFile(chFile, []byte(channelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	key, other := keyFile(t, dir, "key.json"), keyFile(t, dir, "other.json")
	w := startWorkerWith(t, nil, "--data-dir", dataDir, "--channels", chFile, "--data-key-file", key)
	if code, err := post(w.addr, encDelivery(encMsg, encText)); err != nil || code != http.StatusOK {
		t.Fatalf("delivery: %d, %v\n%s", code, err, w.log())
	}
	stop(t, w)
	logs := w.log()
	if !strings.Contains(logs, `"msg":"Encrypting at rest under the tenant's data key"`) || !strings.Contains(logs, `"keyVersion":1,"versions":1}`) {
		t.Errorf("the worker did not say it encrypts:\n%s", logs)
	}
	keyJSON, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	var ring map[string]string
	if err := json.Unmarshal(keyJSON, &ring); err != nil {
		t.Fatal(err)
	}
	for name, v := range ring {
		if strings.Contains(logs, v) {
			t.Errorf("the log holds the key's %s", name)
		}
	}

	raw := atRest(t, dataDir)
	for _, s := range []string{encText, encName, encWaID, encMsg} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("%q is at rest in clear", s)
		}
	}

	out, errOut, err := tryExport(t, dataDir, "--data-key-file", key)
	if err != nil {
		t.Fatalf("export with the key: %v\n%s", err, errOut)
	}
	for _, s := range []string{encText, encName, encWaID, encMsg} {
		if !strings.Contains(out, s) {
			t.Errorf("export with the key lacks %q", s)
		}
	}

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"without a key", nil, "cannot open the stored records: key unavailable"},
		{"with another tenant's key", []string{"--data-key-file", other}, "cannot open the stored records: a record does not authenticate under this key"},
	} {
		out, errOut, err := tryExport(t, dataDir, c.args...)
		if err == nil || !strings.Contains(errOut, c.want) {
			t.Errorf("export %s: err %v, stderr %q; want a failure saying %q", c.name, err, errOut, c.want)
		}
		if strings.Contains(out, encText) || strings.Contains(errOut, encText) {
			t.Errorf("export %s printed the message text", c.name)
		}
	}

	// The canary: a worker over this store with another key, or none, does not start
	// (it would store new records beside these under other keyed hashes).
	if logs := startFails(t, "--data-dir", dataDir, "--channels", chFile, "--data-key-file", other); !strings.Contains(logs, "do not open under this worker's data key") {
		t.Errorf("worker with another key: log lacks the reason:\n%s", logs)
	}
	if logs := startFails(t, "--data-dir", dataDir, "--channels", chFile); !strings.Contains(logs, "this worker has no key to open them") {
		t.Errorf("worker without a key: log lacks the reason:\n%s", logs)
	}
	// And the store is as it was: the refused workers wrote nothing.
	again, _, err := tryExport(t, dataDir, "--data-key-file", key)
	if err != nil || again != out {
		t.Errorf("export after the refused starts differs (err %v)", err)
	}
}

// metric reads one unlabelled sample from the worker's /metrics.
func metric(t *testing.T, addr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// A store kept in clear (a worker from before encryption) is encrypted in the
// background once the worker has a key: readable at once, a redelivery of a message
// stored in clear is still a duplicate, and once the pass is done nothing of the
// fixtures is at rest in clear; the metrics say so.
func TestAClearStoreIsEncryptedInTheBackgroundOnceTheWorkerHasAKey(t *testing.T) {
	dir := t.TempDir()
	dataDir, chFile := filepath.Join(dir, "data"), filepath.Join(dir, "channels.yaml")
	if err := os.WriteFile(chFile, []byte(channelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	key := keyFile(t, dir, "key.json")
	w := startWorkerWith(t, nil, "--data-dir", dataDir, "--channels", chFile)
	// 30 messages: several batches of the pass.
	for i := range 30 {
		if code, err := post(w.addr, encDelivery(fmt.Sprintf("%s-%d", encMsg, i), encText)); err != nil || code != http.StatusOK {
			t.Fatalf("delivery: %d, %v\n%s", code, err, w.log())
		}
	}
	stop(t, w)
	if !strings.Contains(w.log(), "Storing in clear: no data key was given") {
		t.Errorf("the worker without a key did not say it stores in clear:\n%s", w.log())
	}
	if !bytes.Contains(atRest(t, dataDir), []byte(encText)) {
		t.Fatal("the clear store does not hold the text: the test would prove nothing")
	}

	// Small batches, no pause: the pass runs at once, in several transactions.
	w = startWorkerWith(t, nil, "--data-dir", dataDir, "--channels", chFile, "--data-key-file", key,
		"--reseal-batch-size", "8", "--reseal-pause", "0s")
	if code, err := post(w.addr, encDelivery(encMsg+"-0", encText)); err != nil || code != http.StatusOK {
		t.Fatalf("redelivery: %d, %v", code, err)
	}
	waitUntil(t, "the encryption pass", func() bool { return strings.Contains(w.log(), `"msg":"Encryption pass complete"`) })
	if got := metric(t, w.addr, "omniflow_encryption_pending"); got != "0" {
		t.Errorf("omniflow_encryption_pending = %q, want 0", got)
	}
	if got := metric(t, w.addr, "omniflow_encryption_sealed_key_version"); got != "1" {
		t.Errorf("omniflow_encryption_sealed_key_version = %q, want 1", got)
	}
	if got := metric(t, w.addr, "omniflow_encryption_records_resealed_total"); got == "" || got == "0" {
		t.Errorf("omniflow_encryption_records_resealed_total = %q, want the records sealed", got)
	}
	if got := metric(t, w.addr, `omniflow_ingest_messages_duplicate_total{platform="WhatsApp"}`); got != "1" {
		t.Errorf("the redelivery of a message stored in clear: duplicates %q, want 1", got)
	}
	stop(t, w)
	if strings.Contains(w.log(), encText) {
		t.Error("the log holds the message text")
	}

	// Every live record is sealed and every identifier hashed. (The raw bytes of the
	// file may still hold clear remnants in the unused space of b-tree pages that
	// split while the store was in clear; see docs/encryption.md, Status.)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "omniflow.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{"SELECT doc FROM messages", "SELECT doc FROM contacts", "SELECT message_id FROM messages", "SELECT subject FROM contacts"} {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			if n++; !store.IsSealedDoc(v) && !store.IsHashedID(v) {
				t.Errorf("%s: a value in clear after the pass", q)
			}
		}
		if err := rows.Close(); err != nil || n == 0 {
			t.Errorf("%s: %d rows, %v", q, n, err)
		}
	}
	ids, _ := exportIDs(t, dataDir, "--data-key-file", key)
	if len(ids) != 30 {
		t.Errorf("export after the pass: %d messages, want 30", len(ids))
	}
}
