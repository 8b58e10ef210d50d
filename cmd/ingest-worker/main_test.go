package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
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

	"github.com/omniflowcrm/omniflow-operator/internal/ingest"
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
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
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
	return startWorkerWith(t, nil, "--data-dir", dataDir, "--channels", channelsFile)
}

// startWorkerWith runs `ingest-worker serve` with env added to the test's environment
// and args after the test defaults.
func startWorkerWith(t *testing.T, env []string, args ...string) *worker {
	t.Helper()
	cmd := exec.Command(workerBinary(t), append([]string{"serve", "--listen", "127.0.0.1:0", "--channels-reload-interval", "1h", "-v", "1"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
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

// loadResult is what load saw: the message ids of every delivery answered 200, and the
// count of every status code and of transport errors.
type loadResult struct {
	ok    map[string]bool
	codes map[int]int
	errs  int
}

// load sends distinct signed deliveries from n concurrent clients until stop is closed or
// the worker goes away. Message ids are wamid.<prefix>c<client>-<i>-<a|b|c>: distinct
// prefixes keep the deliveries of several runs apart. onAck, if not nil, is called with
// the new count of acknowledged deliveries right after each 200, on the client's goroutine.
func load(addr, prefix string, n int, stop <-chan struct{}, acked *atomic.Int64, onAck func(int64)) loadResult {
	var mu sync.Mutex
	res := loadResult{ok: map[string]bool{}, codes: map[int]int{}}
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
				ids := []string{fmt.Sprintf("wamid.%sc%d-%d-a", prefix, c, i)}
				if i%2 == 1 { // every other delivery is a batch of three
					ids = append(ids, fmt.Sprintf("wamid.%sc%d-%d-b", prefix, c, i), fmt.Sprintf("wamid.%sc%d-%d-c", prefix, c, i))
				}
				code, err := post(addr, delivery(subject, ids...))
				mu.Lock()
				if err != nil {
					res.errs++
				} else {
					res.codes[code]++
				}
				if code == http.StatusOK {
					for _, id := range ids {
						res.ok[id] = true
					}
				}
				mu.Unlock()
				if err != nil {
					return // the worker is gone
				}
				if code == http.StatusOK {
					if n := acked.Add(1); onAck != nil {
						onAck(n)
					}
				}
			}
		}()
	}
	wg.Wait()
	return res
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

// checkAcked fails the test unless every acknowledged message is stored, once.
func checkAcked(t *testing.T, dataDir, when string, acked map[string]bool) map[string]int {
	t.Helper()
	stored, _ := exportIDs(t, dataDir)
	missing := 0
	for id := range acked {
		if stored[id] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("%s: acknowledged message %s missing", when, id)
			}
		}
	}
	for id, n := range stored {
		if n != 1 {
			t.Errorf("%s: message %s stored %d times", when, id, n)
		}
	}
	if missing > 0 {
		t.Fatalf("%s: %d of %d acknowledged messages missing", when, missing, len(acked))
	}
	return stored
}

// Every delivery that got a 200 survives a SIGKILL in the middle of concurrent traffic.
// Several kill/restart rounds run on the same data dir, each with message ids of its own
// (a later round must not redeliver, and so mend, what an earlier one lost), and the
// store is checked after every crash. The kill comes while 32 clients have deliveries in
// flight, at a different point of each round: an acknowledgement that ran ahead of its
// group's COMMIT loses the delivery at almost any such point.
func TestCrashConsistency(t *testing.T) {
	dir := t.TempDir()
	dataDir, chFile := filepath.Join(dir, "data"), filepath.Join(dir, "channels.yaml")
	if err := os.WriteFile(chFile, []byte(channelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	allAcked := map[string]bool{}
	const rounds = 30
	for round := range rounds {
		// Kill at a different point of each round, always mid-stream: 20 to 200 deliveries in.
		after := int64(20 + round*67%181)
		w := startWorker(t, dataDir, chFile)
		var acked atomic.Int64
		stop := make(chan struct{})
		result := make(chan loadResult, 1)
		killed := make(chan error, 1)
		// SIGKILL the moment a client has its after-th 200 in hand: the commit that 200
		// stands for has to be written already, and a worker that answered while its group
		// was still queued or executing is caught in the act. (A SIGKILL cannot catch a
		// missing fsync: the page cache outlives the process.)
		onAck := func(n int64) {
			if n == after {
				killed <- w.cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		go func() { result <- load(w.addr, fmt.Sprintf("r%d", round), 32, stop, &acked, onAck) }()
		select {
		case err := <-killed:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: %d deliveries acknowledged in 30s\n%s", round, acked.Load(), w.log())
		}
		<-w.done
		close(stop)
		got := <-result
		for id := range got.ok {
			allAcked[id] = true
		}
		if code := firstOtherThan(got.codes, http.StatusOK); code != 0 {
			t.Fatalf("round %d: a delivery got %d: %v", round, code, got.codes)
		}
		checkAcked(t, dataDir, fmt.Sprintf("after SIGKILL %d", round), allAcked)
		t.Logf("round %d: %d deliveries acknowledged before SIGKILL", round, acked.Load())
	}
	// Restart on the same data dir: the store opens after the crashes and serves again;
	// a redelivery of an acknowledged message is absorbed.
	w := startWorker(t, dataDir, chFile)
	if code, err := post(w.addr, delivery("44700900000", "wamid.r0c0-0-a")); err != nil || code != 200 {
		t.Fatalf("redelivery after restart: %d %v", code, err)
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-w.done; err != nil {
		t.Fatalf("clean stop after restart: %v\n%s", err, w.log())
	}
	stored := checkAcked(t, dataDir, "after the last restart", allAcked)
	if len(allAcked) < 5000 {
		t.Fatalf("only %d acknowledged messages: the test proves little", len(allAcked))
	}
	t.Logf("%d acknowledged messages all present (%d stored in total)", len(allAcked), len(stored))
}

// firstOtherThan returns a status code in codes other than want, or 0.
func firstOtherThan(codes map[int]int, want int) int {
	for c := range codes {
		if c != want {
			return c
		}
	}
	return 0
}

// heldDelivery is a signed delivery whose handler is running. Its headers went out with
// "Expect: 100-continue", and Go's server answers 100 Continue only once the handler
// starts reading the body: after it found the channel and a ready store. Half the body
// has been sent; finish sends the rest and reads the answer.
type heldDelivery struct {
	conn net.Conn
	br   *bufio.Reader
	rest []byte
}

func holdDelivery(t *testing.T, addr string, body []byte) *heldDelivery {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /webhooks/meta/wa HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%s: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n",
		addr, meta.SignatureHeader, meta.Sign([]byte(secret), body), len(body))
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 100 ") {
		t.Fatalf("held delivery: %q %v, want 100 Continue", status, err)
	}
	if blank, err := br.ReadString('\n'); err != nil || blank != "\r\n" {
		t.Fatalf("held delivery: %q %v after 100 Continue", blank, err)
	}
	half := len(body) / 2
	if _, err := conn.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	return &heldDelivery{conn: conn, br: br, rest: body[half:]}
}

func (h *heldDelivery) finish() (int, error) {
	if _, err := h.conn.Write(h.rest); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// SIGTERM with deliveries in flight: the worker stops accepting connections at once, yet
// every delivery whose handler was already running completes with 200 and is stored;
// no request is ever answered 5xx; the store is closed (its WAL folded into the database
// file) and the worker exits 0.
func TestGracefulShutdownDrainsInFlight(t *testing.T) {
	dir := t.TempDir()
	dataDir, chFile := filepath.Join(dir, "data"), filepath.Join(dir, "channels.yaml")
	if err := os.WriteFile(chFile, []byte(channelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, dataDir, chFile)
	var acked atomic.Int64
	stop := make(chan struct{})
	result := make(chan loadResult, 1)
	go func() { result <- load(w.addr, "g", 16, stop, &acked, nil) }()
	waitUntil(t, "acknowledged deliveries", func() bool { return acked.Load() >= 50 })

	const nHeld = 8
	held := make([]*heldDelivery, nHeld)
	for i := range held {
		held[i] = holdDelivery(t, w.addr, delivery("44700901000", fmt.Sprintf("wamid.held-%d", i)))
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Stops accepting: new connections are refused while the held ones are still open.
	waitUntil(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", w.addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	waitUntil(t, "the shutdown to be logged", func() bool { return strings.Contains(w.log(), `"msg":"Shutting down"`) })
	select {
	case err := <-w.done:
		t.Fatalf("worker exited (%v) with %d deliveries in flight\n%s", err, nHeld, w.log())
	default:
	}
	// The load is still running into the shutdown; give it a moment there.
	time.Sleep(50 * time.Millisecond)
	for i, h := range held {
		if code, err := h.finish(); err != nil || code != http.StatusOK {
			t.Errorf("delivery %d in flight at SIGTERM: %d %v, want 200", i, code, err)
		}
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
	// Answered or refused, never failed: every response of the load was a 200.
	if code := firstOtherThan(got.codes, http.StatusOK); code != 0 {
		t.Errorf("a delivery got %d during shutdown: %v\n%s", code, got.codes, w.log())
	}
	for i := range nHeld {
		got.ok[fmt.Sprintf("wamid.held-%d", i)] = true
	}
	// Closed, not abandoned: Close checkpoints the WAL into the database file. (Before
	// the export, whose own close would checkpoint it too.)
	if fi, err := os.Stat(filepath.Join(dataDir, "omniflow.db-wal")); err == nil && fi.Size() > 0 {
		t.Errorf("store not closed: %d bytes left in its WAL", fi.Size())
	}
	stored := checkAcked(t, dataDir, "after SIGTERM", got.ok)
	t.Logf("%d deliveries acknowledged, %d messages stored, %d refused connections; codes %v",
		acked.Load(), len(stored), got.errs, got.codes)
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
	result := make(chan loadResult, 1)
	go func() { result <- load(w.addr, "", 8, stop, &acked, nil) }()
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
	got := (<-result).ok
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

// padded is a signed-valid delivery of one message padded with JSON whitespace to exactly
// size bytes.
func padded(t *testing.T, size int, id string) []byte {
	t.Helper()
	base := delivery("44700902000", id)
	if size < len(base) {
		t.Fatalf("%d bytes is smaller than the delivery", size)
	}
	body := make([]byte, 0, size)
	body = append(body, base[:len(base)-1]...)
	body = append(body, bytes.Repeat([]byte(" "), size-len(base))...)
	return append(body, '}')
}

// Without --max-body-bytes a delivery may be 4 MiB (WhatsApp's reach 3 MB), not a byte
// more: 4 MiB + 1 is refused with 413, whether it announces its length or is chunked, and
// nothing of it is stored.
func TestDefaultBodyLimit(t *testing.T) {
	dir := t.TempDir()
	dataDir, chFile := filepath.Join(dir, "data"), filepath.Join(dir, "channels.yaml")
	if err := os.WriteFile(chFile, []byte(channelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, dataDir, chFile)
	if strings.Contains(strings.Join(w.cmd.Args, " "), "max-body") {
		t.Fatalf("worker started with a body limit: %q", w.cmd.Args)
	}
	const limit = 4 << 20
	if code, err := post(w.addr, padded(t, limit, "wamid.limit-at")); err != nil || code != http.StatusOK {
		t.Fatalf("delivery of exactly 4 MiB: %d %v, want 200", code, err)
	}
	over := padded(t, limit+1, "wamid.limit-over")
	if code, err := post(w.addr, over); err != nil || code != http.StatusRequestEntityTooLarge {
		t.Fatalf("delivery of 4 MiB + 1 with Content-Length: %d %v, want 413", code, err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+w.addr+"/webhooks/meta/wa", io.MultiReader(bytes.NewReader(over)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(meta.SignatureHeader, meta.Sign([]byte(secret), over))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("chunked delivery of 4 MiB + 1: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked delivery of 4 MiB + 1: %d, want 413", resp.StatusCode)
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-w.done; err != nil {
		t.Fatalf("stop: %v\n%s", err, w.log())
	}
	stored, _ := exportIDs(t, dataDir)
	if stored["wamid.limit-at"] != 1 || stored["wamid.limit-over"] != 0 || len(stored) != 1 {
		t.Fatalf("stored %v, want only wamid.limit-at", stored)
	}
}

// The worker collects garbage at ingest.GCPercent unless $GOGC says otherwise (the Go
// runtime's own figure, as /metrics reports it).
func TestGCPercent(t *testing.T) {
	dir := t.TempDir()
	chFile := filepath.Join(dir, "channels.yaml")
	if err := os.WriteFile(chFile, []byte(channelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ gogc, want string }{
		{"", fmt.Sprint(ingest.GCPercent)}, // unset (empty counts as unset for Go too)
		{"50", "50"},
	} {
		w := startWorkerWith(t, []string{"GOGC=" + tc.gogc}, "--data-dir", filepath.Join(dir, "data"+tc.gogc), "--channels", chFile)
		if got := metric(t, w.addr, "go_gc_gogc_percent"); got != tc.want {
			t.Errorf("GOGC=%q: go_gc_gogc_percent %q, want %s", tc.gogc, got, tc.want)
		}
		w.cmd.Process.Signal(syscall.SIGTERM)
		if err := <-w.done; err != nil {
			t.Fatalf("stop: %v\n%s", err, w.log())
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
