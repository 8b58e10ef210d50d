package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/omniflowcrm/omniflow-operator/internal/forward"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// These tests run the real binaries as separate processes: the front door and two
// tenants' standalone workers, over real sockets, with Meta's real signature scheme.

const (
	appSecret   = "test_app_secret_0123456789abcdef"
	verifyToken = "shared-app-verify-token"
	fixtureDir  = "../../internal/meta/testdata/fixtures"
	extraDir    = "../../internal/meta/testdata/extra"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds the front door and the worker once.
func binaries(t *testing.T) (frontdoorBin, workerBin string) {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "frontdoor-test"); buildErr != nil {
			return
		}
		for _, pkg := range []string{".", "../ingest-worker"} {
			name := filepath.Base(pkg)
			if pkg == "." {
				name = "frontdoor"
			}
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "frontdoor"), filepath.Join(binDir, "ingest-worker")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

type proc struct {
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	logs bytes.Buffer
	done chan error
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *proc) stop() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

var addrRE = regexp.MustCompile(`"msg":"Serving".*"addr":"([^"]+)"`)

// start runs a binary that logs "Serving" with its address, then "Ready".
func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		addr := ""
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := addrRE.FindStringSubmatch(line); m != nil {
				addr = m[1]
			}
			if strings.Contains(line, `"msg":"Ready"`) {
				ready <- addr
			}
		}
		p.done <- p.cmd.Wait()
	}()
	select {
	case p.addr = <-ready:
	case err := <-p.done:
		t.Fatalf("%s exited before ready: %v\n%s", bin, err, p.log())
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatalf("%s not ready:\n%s", bin, p.log())
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.stop()
		}
	})
	return p
}

func write(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type tenant struct {
	name, dataDir, channelsFile, keyFile string
	worker                               *proc
	workerBin                            string
	// listen is the worker's address; empty: any free port, another at each start.
	listen string
}

func (tn *tenant) start(t *testing.T) {
	listen := tn.listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	tn.worker = start(t, tn.workerBin, "serve", "--listen", listen, "--data-dir", tn.dataDir,
		"--channels", tn.channelsFile, "--forward-key-file", tn.keyFile)
}

// forwards is how many requests reached the worker's forward endpoint since it started
// (its omniflow_ingest_forwarded_total, every result).
func (tn *tenant) forwards(t *testing.T) float64 {
	t.Helper()
	resp, err := http.Get("http://" + tn.worker.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		if line := sc.Text(); strings.HasPrefix(line, "omniflow_ingest_forwarded_total{") {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}

// messages runs `ingest-worker export` and returns "channel/id" of every stored message.
func (tn *tenant) messages(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command(tn.workerBin, "export", "--data-dir", tn.dataDir).Output()
	if err != nil {
		t.Fatalf("export %s: %v", tn.name, err)
	}
	var ids []string
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var r map[string]any
		if len(line) == 0 || json.Unmarshal(line, &r) != nil {
			continue
		}
		if r["kind"] == "message" {
			ids = append(ids, fmt.Sprint(r["channel"], "/", r["id"]))
		}
	}
	sort.Strings(ids)
	return ids
}

type rig struct {
	acme, globex *tenant
	door         *proc
	routesFile   string
	dir          string
}

func (r *rig) writeRoutes(t *testing.T) {
	write(t, r.routesFile, fmt.Sprintf(`tenants:
  - name: acme
    worker: http://%s
    channels:
      - {platform: WhatsApp, whatsApp: {phoneNumberID: "123456789012345", businessAccountID: "109876543210987"}}
      - {platform: Messenger, messenger: {pageID: "104857600123456"}}
  - name: globex
    worker: http://%s
    channels:
      - {platform: WhatsApp, whatsApp: {phoneNumberID: "999999999999999", businessAccountID: "209876543210987"}}
      - {platform: Messenger, messenger: {pageID: "104857600999999"}}
`, r.acme.worker.addr, r.globex.worker.addr))
}

func newRig(t *testing.T) *rig {
	fdBin, workerBin := binaries(t)
	dir := t.TempDir()
	r := &rig{dir: dir, routesFile: filepath.Join(dir, "routes.yaml")}
	keyFile := write(t, filepath.Join(dir, "forwarding.key"), hex.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))+"\n")
	mk := func(name, phone, waba, page string) *tenant {
		tn := &tenant{name: name, dataDir: filepath.Join(dir, name), workerBin: workerBin}
		// The channels carry their own secrets for their direct URLs; forwarded parts
		// need none of them.
		tn.channelsFile = write(t, filepath.Join(dir, name+".yaml"), fmt.Sprintf(`tenant: %s
channels:
  - {name: wa, platform: WhatsApp, whatsApp: {phoneNumberID: %q, businessAccountID: %q}, appSecret: own-secret-%s, verifyToken: v}
  - {name: page, platform: Messenger, messenger: {pageID: %q}, appSecret: own-secret-%s, verifyToken: v}
`, name, phone, waba, name, page, name))
		out, err := exec.Command(fdBin, "tenant-key", "--forwarding-key-file", keyFile, "--tenant", name).Output()
		if err != nil {
			t.Fatalf("tenant-key: %v", err)
		}
		tn.keyFile = write(t, filepath.Join(dir, name+".key"), string(out))
		tn.start(t)
		return tn
	}
	r.acme = mk("acme", "123456789012345", "109876543210987", "104857600123456")
	r.globex = mk("globex", "999999999999999", "209876543210987", "104857600999999")
	r.writeRoutes(t)
	r.door = start(t, fdBin, "serve", "--listen", "127.0.0.1:0", "--routes", r.routesFile, "--routes-reload-interval", "50ms",
		"--app-secret-file", write(t, filepath.Join(dir, "app-secret"), appSecret),
		"--verify-token-file", write(t, filepath.Join(dir, "verify-token"), verifyToken),
		"--forwarding-key-file", keyFile)
	return r
}

func post(t *testing.T, url string, body []byte, header, sig string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if sig != "" {
		req.Header.Set(header, sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func (r *rig) deliver(t *testing.T, body []byte) int {
	return post(t, "http://"+r.door.addr+"/webhooks/meta", body, meta.SignatureHeader, meta.Sign([]byte(appSecret), body))
}

func readFixture(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func waText(phone, id string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"109876543210987","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":%q},"contacts":[{"profile":{"name":"Ana"},"wa_id":"15555550142"}],"messages":[{"from":"15555550142","id":%q,"timestamp":"1781100000","type":"text","text":{"body":"hi"}}]}}]}]}`, phone, id))
}

func TestFrontDoorProcesses(t *testing.T) {
	g := NewWithT(t)
	r := newRig(t)

	// Mixed deliveries of the shared fixtures: each tenant's export holds exactly its parts.
	g.Expect(r.deliver(t, readFixture(t, filepath.Join(extraDir, "whatsapp-batch-two-numbers.json")))).To(Equal(http.StatusOK))
	text := readFixture(t, filepath.Join(fixtureDir, "messenger-text.json"))
	other := bytes.ReplaceAll(bytes.ReplaceAll(text, []byte("104857600123456"), []byte("104857600999999")), []byte("m_ZmFrZS1taWQtVFhUMQ"), []byte("m_globex"))
	both, err := meta.Combine(text, other)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.deliver(t, both)).To(Equal(http.StatusOK))
	g.Expect(r.acme.messages(t)).To(Equal([]string{"page/m_ZmFrZS1taWQtVFhUMQ", "wa/wamid.EXTRA-OWN-1", "wa/wamid.EXTRA-OWN-2"}))
	g.Expect(r.globex.messages(t)).To(Equal([]string{"page/m_globex", "wa/wamid.EXTRA-FOREIGN-1"}))

	// Forged, unsigned and tampered deliveries change nothing anywhere.
	mix, err := meta.Combine(waText("123456789012345", "wamid.A1"), waText("999999999999999", "wamid.G1"))
	g.Expect(err).NotTo(HaveOccurred())
	door := "http://" + r.door.addr + "/webhooks/meta"
	g.Expect(post(t, door, mix, meta.SignatureHeader, "")).To(Equal(http.StatusUnauthorized))
	g.Expect(post(t, door, mix, meta.SignatureHeader, meta.Sign([]byte("forged"), mix))).To(Equal(http.StatusUnauthorized))
	g.Expect(post(t, door, bytes.Replace(mix, []byte("wamid.G1"), []byte("wamid.G9"), 1), meta.SignatureHeader, meta.Sign([]byte(appSecret), mix))).To(Equal(http.StatusUnauthorized))
	// A forged internal request straight at a worker: signed with the other tenant's
	// credential, and with Meta's app secret.
	acmeKey, err := forward.ReadKeyFile(r.acme.keyFile)
	g.Expect(err).NotTo(HaveOccurred())
	fwd := "http://" + r.globex.worker.addr + forward.Path
	g.Expect(post(t, fwd, mix, forward.SignatureHeader, forward.Sign(acmeKey, "globex", mix))).To(Equal(http.StatusUnauthorized))
	g.Expect(post(t, fwd, mix, forward.SignatureHeader, meta.Sign([]byte(appSecret), mix))).To(Equal(http.StatusUnauthorized))
	g.Expect(r.acme.messages(t)).To(HaveLen(3))
	g.Expect(r.globex.messages(t)).To(HaveLen(2))

	// One worker stopped: Meta gets an error. It comes back elsewhere; the routes file
	// says so, the front door picks it up without a restart, and Meta's retry leaves
	// every part stored once.
	r.globex.worker.stop()
	g.Expect(r.deliver(t, mix)).To(BeNumerically(">=", 500))
	r.globex.start(t)
	r.writeRoutes(t)
	g.Eventually(func() int { return r.deliver(t, mix) }).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Equal(http.StatusOK))
	g.Expect(r.deliver(t, mix)).To(Equal(http.StatusOK))
	g.Expect(r.acme.messages(t)).To(Equal([]string{"page/m_ZmFrZS1taWQtVFhUMQ", "wa/wamid.A1", "wa/wamid.EXTRA-OWN-1", "wa/wamid.EXTRA-OWN-2"}))
	g.Expect(r.globex.messages(t)).To(Equal([]string{"page/m_globex", "wa/wamid.EXTRA-FOREIGN-1", "wa/wamid.G1"}))

	// The handshake on the app's URL.
	resp, err := http.Get(door + "?hub.mode=subscribe&hub.challenge=42&hub.verify_token=" + verifyToken)
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
}
