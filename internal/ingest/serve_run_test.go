package ingest_test

// Serve as the worker runs it, in process: a real listener, a real SQLite store, the
// metrics the worker exposes and its graceful stop.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/ingest"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
)

const runSecret = "serve_run_test_secret_0123456789"

// staticSource is a channel source whose channels are already in the registry.
type staticSource struct{}

func (staticSource) Run(ctx context.Context, synced func()) error {
	synced()
	<-ctx.Done()
	return nil
}

type running struct {
	addr    string
	dataDir string
	stop    context.CancelFunc
	done    chan error
}

// serveWorker runs ingest.Serve with one WhatsApp channel until the test ends, and waits
// until it is ready. configure, if given, adjusts the configuration first.
func serveWorker(t *testing.T, configure ...func(*ingest.ServeConfig)) *running {
	t.Helper()
	reg := channels.NewRegistry()
	if err := reg.Upsert(channels.Channel{Name: "wa", Platform: meta.WhatsApp,
		WhatsApp:  &channels.WhatsAppIDs{PhoneNumberID: "123456789012345", BusinessAccountID: "109876543210987"},
		AppSecret: runSecret, VerifyToken: "verify"}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{addr: ln.Addr().String(), dataDir: t.TempDir(), stop: cancel, done: make(chan error, 1)}
	cfg := ingest.ServeConfig{Listener: ln, DataDir: r.dataDir, Tenant: "acme",
		Registry: reg, Source: staticSource{}, ShutdownTimeout: 20 * time.Second, Log: logr.Discard()}
	for _, c := range configure {
		c(&cfg)
	}
	r.dataDir = cfg.DataDir
	go func() { r.done <- ingest.Serve(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("Serve did not return")
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + r.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker not ready: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waBody(id string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"109876543210987","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001234","phone_number_id":"123456789012345"},"contacts":[{"profile":{"name":"Run"},"wa_id":"447009000001"}],"messages":[{"from":"447009000001","id":%q,"timestamp":"1781100000","type":"text","text":{"body":"serve test"}}]}}]}]}`, id))
}

func postTo(addr string, body []byte, signature string) (int, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/webhooks/meta/wa", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set(meta.SignatureHeader, signature)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// scrape returns the samples of /metrics by series ("name" or `name{label="v"}`).
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return samples
}

// exportMessageIDs opens the stopped worker's store and counts its messages by id.
func exportMessageIDs(t *testing.T, dataDir string) map[string]int {
	t.Helper()
	st, err := sqlite.Open(dataDir, sqlite.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ids := map[string]int{}
	err = st.Export(context.Background(), store.Filter{}, func(r store.Record) error {
		if r.Kind != store.KindMessage {
			return nil
		}
		var m struct{ ID string }
		if err := json.Unmarshal(r.Doc, &m); err != nil {
			return err
		}
		ids[m.ID]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// The worker's /metrics tell stored deliveries from the rest, and the store's group
// commits are observed (the store is opened with the metrics as its Observer).
func TestServeMetricsCountStoredDeliveries(t *testing.T) {
	t.Parallel()
	w := serveWorker(t)
	before := scrape(t, w.addr)
	for _, name := range []string{"omniflow_store_commit_duration_seconds_count", "omniflow_store_commit_group_size_count", `omniflow_ingest_deliveries_total{result="stored"}`} {
		if v, ok := before[name]; !ok || v != 0 {
			t.Fatalf("before any delivery: %s = %v (present %v), want 0", name, v, ok)
		}
	}
	const stored = 12
	var wg sync.WaitGroup
	errs := make(chan error, stored)
	for i := range stored { // concurrent, so that some share a group commit
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := waBody(fmt.Sprintf("wamid.metrics-%d", i))
			if code, err := postTo(w.addr, body, meta.Sign([]byte(runSecret), body)); err != nil || code != http.StatusOK {
				errs <- fmt.Errorf("delivery %d: %d %v", i, code, err) //nolint:errorlint // err is nil when the status is the failure
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// A forged delivery is refused, and neither stored nor committed.
	forged := waBody("wamid.metrics-forged")
	if code, err := postTo(w.addr, forged, meta.Sign([]byte("forged"), forged)); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("forged delivery: %d %v", code, err)
	}

	m := scrape(t, w.addr)
	for name, want := range map[string]float64{
		`omniflow_ingest_deliveries_total{result="stored"}`:          stored,
		`omniflow_ingest_deliveries_total{result="acknowledged"}`:    0,
		`omniflow_ingest_deliveries_total{result="unauthorized"}`:    1,
		`omniflow_ingest_deliveries_total{result="store_error"}`:     0,
		`omniflow_ingest_messages_stored_total{platform="WhatsApp"}`: stored,
		// Every committed delivery is in exactly one group: the sizes add up to them all.
		"omniflow_store_commit_group_size_sum": stored,
		"omniflow_store_commit_errors_total":   0,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	commits := m["omniflow_store_commit_duration_seconds_count"]
	if commits <= 0 || commits > stored {
		t.Errorf("omniflow_store_commit_duration_seconds_count = %v, want 1..%d", commits, stored)
	}
	if got := m["omniflow_store_commit_group_size_count"]; got != commits {
		t.Errorf("omniflow_store_commit_group_size_count = %v, want one per commit (%v)", got, commits)
	}
	if m["omniflow_store_commit_duration_seconds_sum"] <= 0 {
		t.Errorf("omniflow_store_commit_duration_seconds_sum = %v, want > 0", m["omniflow_store_commit_duration_seconds_sum"])
	}
	if got := m["omniflow_ingest_delivery_duration_seconds_count"]; got != stored+1 {
		t.Errorf("omniflow_ingest_delivery_duration_seconds_count = %v, want %d", got, stored+1)
	}
}

// holdRequest starts a signed delivery whose handler is running: its headers go out with
// "Expect: 100-continue", which Go's server answers only when the handler starts reading
// the body (after it found the channel and a ready store). Half the body is then sent;
// the returned func sends the rest and reads the answer.
func holdRequest(t *testing.T, addr string, body []byte) func() (int, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /webhooks/meta/wa HTTP/1.1\r\nHost: %s\r\n%s: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n",
		addr, meta.SignatureHeader, meta.Sign([]byte(runSecret), body), len(body))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil) //nolint:bodyclose // a 100 Continue interim response has no body
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("held delivery: %v %v, want 100 Continue", resp, err)
	}
	half := len(body) / 2
	if _, err := conn.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	return func() (int, error) {
		if _, err := conn.Write(body[half:]); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
}

// When its context ends (SIGTERM in the binary), Serve stops accepting connections at
// once, lets the deliveries already running finish and commit, answers them 200, and only
// then closes the store and returns nil.
func TestServeDrainsInFlightDeliveries(t *testing.T) {
	t.Parallel()
	w := serveWorker(t)
	const n = 6
	finish := make([]func() (int, error), n)
	for i := range finish {
		finish[i] = holdRequest(t, w.addr, waBody(fmt.Sprintf("wamid.drain-%d", i)))
	}
	w.stop()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", w.addr, time.Second)
		if err != nil {
			break // the listener is closed
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections after the context ended")
		}
		time.Sleep(2 * time.Millisecond)
	}
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup
		t.Fatalf("Serve returned (%v) with %d deliveries in flight", err, n)
	case <-time.After(50 * time.Millisecond):
	}
	for i, f := range finish {
		if code, err := f(); err != nil || code != http.StatusOK {
			t.Errorf("delivery %d in flight at shutdown: %d %v, want 200", i, code, err)
		}
	}
	select {
	case err := <-w.done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
		w.done <- nil // for the cleanup
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after the deliveries finished")
	}
	// The store was closed, not abandoned: Close folds the WAL into the database file.
	// (Checked before the export, whose own close would do the same.)
	if fi, err := os.Stat(filepath.Join(w.dataDir, sqlite.FileName+"-wal")); err == nil && fi.Size() > 0 {
		t.Errorf("store not closed: %d bytes left in its WAL", fi.Size())
	}
	ids := exportMessageIDs(t, w.dataDir)
	for i := range n {
		if id := fmt.Sprintf("wamid.drain-%d", i); ids[id] != 1 {
			t.Errorf("%s stored %d times, want 1", id, ids[id])
		}
	}
}
