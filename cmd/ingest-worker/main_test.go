package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

const secret = "test_app_secret_0123456789abcdef"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// workerBinary builds the real binary once; the tests run it as a separate process so that
// SIGKILL and SIGTERM hit a real worker, not a goroutine.
func workerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ingest-worker-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ingest-worker")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

const channelsYAML = `tenant: acme
channels:
  - name: wa
    platform: WhatsApp
    whatsApp: {phoneNumberID: "123456789012345", businessAccountID: "109876543210987"}
    appSecret: ` + secret + `
    verifyToken: tenant-a-verify-7f3c
`

type worker struct {
	cmd    *exec.Cmd
	addr   string
	logs   *bytes.Buffer
	logsMu *sync.Mutex
	done   chan error
}

func (w *worker) log() string {
	w.logsMu.Lock()
	defer w.logsMu.Unlock()
	return w.logs.String()
}

var addrRE = regexp.MustCompile(`"msg":"Serving".*"addr":"([^"]+)"`)

// startWorker runs `ingest-worker serve` and waits until it reports its store open.
func startWorker(t *testing.T, dataDir, channelsFile string) *worker {
	t.Helper()
	cmd := exec.Command(workerBinary(t), "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir,
		"--channels", channelsFile, "--channels-reload-interval", "1h", "-v", "1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &worker{cmd: cmd, logs: &bytes.Buffer{}, logsMu: &sync.Mutex{}, done: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		addr := ""
		for sc.Scan() {
			line := sc.Text()
			w.logsMu.Lock()
			w.logs.WriteString(line + "\n")
			w.logsMu.Unlock()
			if m := addrRE.FindStringSubmatch(line); m != nil {
				addr = m[1]
			}
			if strings.Contains(line, `"msg":"Ready"`) {
				ready <- addr
			}
		}
		w.done <- cmd.Wait()
	}()
	select {
	case w.addr = <-ready:
	case err := <-w.done:
		t.Fatalf("worker exited before ready: %v\n%s", err, w.log())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("worker not ready:\n%s", w.log())
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-w.done
		}
	})
	return w
}

func delivery(subject string, ids ...string) []byte {
	var msgs []string
	for i, id := range ids {
		msgs = append(msgs, fmt.Sprintf(`{"from":%q,"id":%q,"timestamp":"%d","type":"text","text":{"body":"crash test %d"}}`, subject, id, 1781100000+i, i))
	}
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"109876543210987","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001234","phone_number_id":"123456789012345"},"contacts":[{"profile":{"name":"Load"},"wa_id":%q}],"messages":[%s]}}]}]}`,
		subject, strings.Join(msgs, ",")))
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func post(addr string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/webhooks/meta/wa", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set(meta.SignatureHeader, meta.Sign([]byte(secret), body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// load sends distinct signed deliveries from n concurrent clients until stop is closed or
// the worker goes away, and returns the message ids of every delivery answered 200.
func load(addr string, n int, stop <-chan struct{}, acked *atomic.Int64) map[string]bool {
	var mu sync.Mutex
	ok := map[string]bool{}
	var wg sync.WaitGroup
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			subject := fmt.Sprintf("4470090%04d", c)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ids := []string{fmt.Sprintf("wamid.c%d-%d-a", c, i)}
				if i%2 == 1 { // every other delivery is a batch of three
					ids = append(ids, fmt.Sprintf("wamid.c%d-%d-b", c, i), fmt.Sprintf("wamid.c%d-%d-c", c, i))
				}
				code, err := post(addr, delivery(subject, ids...))
				if err != nil {
					return // the worker is gone
				}
				if code == http.StatusOK {
					mu.Lock()
					for _, id := range ids {
						ok[id] = true
					}
					mu.Unlock()
					acked.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return ok
}

// exportIDs runs `ingest-worker export` and returns the stored message ids (and counts).
func exportIDs(t *testing.T, dataDir string, extra ...string) (map[string]int, []map[string]any) {
	t.Helper()
	out, err := exec.Command(workerBinary(t), append([]string{"export", "--data-dir", dataDir}, extra...)...).Output()
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	ids := map[string]int{}
	var recs []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		recs = append(recs, r)
		if r["kind"] == "message" {
			ids[r["id"].(string)]++
		}
	}
	return ids, recs
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Every delivery that got a 200 survives a SIGKILL in the middle of concurrent traffic.
func TestCrashConsistency(t *testing.T) {
	dir := t.TempDir()
	dataDir, chFile := filepath.Join(dir, "data"), filepath.Join(dir, "channels.yaml")
	if err := os.WriteFile(chFile, []byte(channelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	allAcked := map[string]bool{}
	for round := range 3 {
		w := startWorker(t, dataDir, chFile)
		var acked atomic.Int64
		stop := make(chan struct{})
		result := make(chan map[string]bool, 1)
		go func() { result <- load(w.addr, 16, stop, &acked) }()
		// Kill at a different point each round, always mid-stream.
		waitUntil(t, "acknowledged deliveries", func() bool { return acked.Load() >= int64(100+150*round) })
		if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-w.done
		close(stop)
		got := <-result
		for id := range got {
			allAcked[id] = true
		}
		t.Logf("round %d: %d deliveries acknowledged before SIGKILL", round, acked.Load())
	}
	// Restart on the same data dir: the store opens after the crash and serves again;
	// a redelivery of an acknowledged message is absorbed.
	w := startWorker(t, dataDir, chFile)
	if code, err := post(w.addr, delivery("44700900000", "wamid.c0-0-a")); err != nil || code != 200 {
		t.Fatalf("redelivery after restart: %d %v", code, err)
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-w.done; err != nil {
		t.Fatalf("clean stop after restart: %v\n%s", err, w.log())
	}
	stored, _ := exportIDs(t, dataDir)
	missing := 0
	for id := range allAcked {
		if stored[id] == 0 {
			missing++
			if missing < 10 {
				t.Errorf("acknowledged message %s missing after SIGKILL", id)
			}
		}
	}
	for id, n := range stored {
		if n != 1 {
			t.Errorf("message %s stored %d times", id, n)
		}
	}
	if missing > 0 || len(allAcked) < 300 {
		t.Fatalf("%d of %d acknowledged messages missing", missing, len(allAcked))
	}
	t.Logf("%d acknowledged messages all present (%d stored in total)", len(allAcked), len(stored))
}

// SIGTERM: stop accepting, finish and commit in-flight deliveries, close the store, exit 0.
// Also: SIGHUP reloads the channels file, and export --subject selects one end user.
func TestGracefulShutdownReloadAndSubjectExport(t *testing.T) {
	dir := t.TempDir()
	dataDir, chFile := filepath.Join(dir, "data"), filepath.Join(dir, "channels.yaml")
	if err := os.WriteFile(chFile, []byte(channelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, dataDir, chFile)
	handshake := func(channel, token string) int {
		resp, err := client.Get("http://" + w.addr + "/webhooks/meta/" + channel + "?hub.mode=subscribe&hub.challenge=42&hub.verify_token=" + token)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if handshake("page", "page-token") != http.StatusNotFound {
		t.Fatal("channel served before it was configured")
	}
	more := channelsYAML + `  - name: page
    platform: Messenger
    messenger: {pageID: "104857600123456"}
    appSecret: other-secret
    verifyToken: page-token
`
	if err := os.WriteFile(chFile, []byte(more), 0o600); err != nil {
		t.Fatal(err)
	}
	w.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "reloaded channel", func() bool { return handshake("page", "page-token") == http.StatusOK })

	var acked atomic.Int64
	stop := make(chan struct{})
	result := make(chan map[string]bool, 1)
	go func() { result <- load(w.addr, 8, stop, &acked) }()
	waitUntil(t, "acknowledged deliveries", func() bool { return acked.Load() >= 200 })
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.done:
		if err != nil {
			t.Fatalf("worker exit after SIGTERM: %v\n%s", err, w.log())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop after SIGTERM")
	}
	close(stop)
	got := <-result
	if !strings.Contains(w.log(), `"msg":"Stopped cleanly"`) {
		t.Fatalf("no clean stop in log:\n%s", w.log())
	}
	if _, err := post(w.addr, delivery("1", "after")); err == nil {
		t.Fatal("worker still accepts deliveries after stopping")
	}
	stored, _ := exportIDs(t, dataDir)
	for id := range got {
		if stored[id] == 0 {
			t.Fatalf("acknowledged message %s missing after graceful shutdown", id)
		}
	}
	// One end user's records only.
	subj, recs := exportIDs(t, dataDir, "--subject", "44700900003")
	if len(subj) == 0 {
		t.Fatal("subject export is empty")
	}
	for _, r := range recs {
		if r["subject"] != "44700900003" {
			t.Fatalf("subject export contains another subject's record: %v", r)
		}
	}
	for id := range subj {
		if !strings.HasPrefix(id, "wamid.c3-") {
			t.Fatalf("subject export contains message %s", id)
		}
	}
}

func TestExportFlags(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := export([]string{"--data-dir", t.TempDir()}, &out); err == nil {
		t.Error("export of a directory without a store succeeded")
	}
	if err := export([]string{"--data-dir", t.TempDir(), "--platform", "Telegram"}, &out); err == nil {
		t.Error("unknown platform accepted")
	}
	if err := export(nil, &out); err == nil {
		t.Error("missing --data-dir accepted")
	}
}
