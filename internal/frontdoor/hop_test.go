package frontdoor

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/forward"
)

// hopWorker is a worker stand-in over real HTTP that counts the connections it accepts
// and hands each request to handle.
type hopWorker struct {
	srv   *httptest.Server
	conns atomic.Int64
}

func newHopWorker(t *testing.T, handle http.HandlerFunc) *hopWorker {
	t.Helper()
	w := &hopWorker{}
	w.srv = httptest.NewUnstartedServer(handle)
	w.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			w.conns.Add(1)
		}
	}
	w.srv.Start()
	t.Cleanup(w.srv.Close)
	return w
}

func (w *hopWorker) post(t *testing.T, h *hop, body string) (int, error) {
	t.Helper()
	return h.post(context.Background(), h.endpointOf(w.srv.URL), forward.Path, "sha256=sig", []byte(body), time.Now().Add(10*time.Second))
}

func ok200(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }

// The request is what net/http would send: method, path, Host, length, type, the
// signature and the body; the worker's status comes back.
func TestHopSendsTheForward(t *testing.T) {
	var got struct {
		method, path, host, ctype, sig, body string
		length                               int64
	}
	w := newHopWorker(t, func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.method, got.path, got.host, got.ctype = r.Method, r.URL.Path, r.Host, r.Header.Get("Content-Type")
		got.sig, got.body, got.length = r.Header.Get(forward.SignatureHeader), string(b), r.ContentLength
		rw.WriteHeader(http.StatusAccepted)
	})
	h := newHop(DialAt(nil))
	e := h.endpointOf(w.srv.URL + "/base")
	code, err := h.post(context.Background(), e, forward.Path, "sha256=abc", []byte(`{"object":"x"}`), time.Now().Add(10*time.Second))
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("post: %d %v", code, err)
	}
	if got.method != http.MethodPost || got.path != "/base"+forward.Path || got.host != strings.TrimPrefix(w.srv.URL, "http://") ||
		got.ctype != "application/json" || got.sig != "sha256=abc" || got.body != `{"object":"x"}` || got.length != 14 {
		t.Errorf("worker got %+v", got)
	}
}

// Forwards reuse one kept-alive connection after the answers a worker gives (a status,
// a short text); after an answer that says Connection: close, one too long to read
// whole, or one in another framing (chunked), the connection is not reused.
func TestHopReusesConnections(t *testing.T) {
	for name, tc := range map[string]struct {
		handle http.HandlerFunc
		conns  int64
	}{
		"empty": {ok200, 1},
		"text":  {func(w http.ResponseWriter, r *http.Request) { ok200(w, r); _, _ = io.WriteString(w, "ok\n") }, 1},
		"chunked": {func(w http.ResponseWriter, r *http.Request) {
			ok200(w, r)
			_, _ = io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "b")
		}, 3},
		"error": {func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusInternalServerError) }, 1},
		"close": {func(w http.ResponseWriter, r *http.Request) { ok200(w, r); w.Header().Set("Connection", "close") }, 3},
		"long answer": {func(w http.ResponseWriter, r *http.Request) {
			ok200(w, r)
			_, _ = io.WriteString(w, strings.Repeat("x", 5000))
		}, 3},
	} {
		t.Run(name, func(t *testing.T) {
			w := newHopWorker(t, tc.handle)
			h := newHop(DialAt(nil))
			for range 3 {
				if _, err := w.post(t, h, "{}"); err != nil {
					t.Fatal(err)
				}
			}
			if n := w.conns.Load(); n != tc.conns {
				t.Errorf("%d connections for 3 forwards, want %d", n, tc.conns)
			}
			h.mu.Lock()
			idle := int64(len(h.idle[h.endpointOf(w.srv.URL).addr]))
			h.mu.Unlock()
			if kept := map[bool]int64{true: 1, false: 0}[tc.conns == 1]; idle != kept {
				t.Errorf("%d idle connections kept, want %d", idle, kept)
			}
		})
	}
}

// An idle connection the worker closed (its idle timeout, a restart) is replaced and the
// forward sent again, once.
func TestHopRetriesAStaleConnection(t *testing.T) {
	var forwards atomic.Int64
	w := newHopWorker(t, func(rw http.ResponseWriter, r *http.Request) { forwards.Add(1); ok200(rw, r) })
	h := newHop(DialAt(nil))
	if _, err := w.post(t, h, "{}"); err != nil {
		t.Fatal(err)
	}
	w.srv.CloseClientConnections()
	if code, err := w.post(t, h, "{}"); err != nil || code != http.StatusOK {
		t.Fatalf("after the worker closed the idle connection: %d %v", code, err)
	}
	if n, f := w.conns.Load(), forwards.Load(); n != 2 || f != 2 {
		t.Errorf("%d connections, %d forwards; want 2 and 2", n, f)
	}
}

// A fresh connection that fails is no stale one: the forward fails, without a second
// attempt.
func TestHopDoesNotRetryAFreshConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			// Read the request, then hang up without an answer.
			_, _ = http.ReadRequest(bufio.NewReader(c))
			_ = c.Close()
		}
	}()
	h := newHop(DialAt(nil))
	if _, err := h.post(context.Background(), h.endpointOf("http://"+ln.Addr().String()), forward.Path, "sha256=x", []byte("{}"), time.Now().Add(10*time.Second)); err == nil {
		t.Fatal("a worker hanging up without an answer: no error")
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// Idle connections are kept at most idleTimeout, and at most maxIdle per worker.
func TestHopIdleConnections(t *testing.T) {
	// hold, once set, makes the worker wait for every forward to arrive.
	var hold atomic.Pointer[sync.WaitGroup]
	release := make(chan struct{})
	w := newHopWorker(t, func(rw http.ResponseWriter, r *http.Request) {
		if wg := hold.Load(); wg != nil {
			wg.Done()
			<-release
		}
		ok200(rw, r)
	})
	h := newHop(DialAt(nil))
	now := time.Unix(1_800_000_000, 0)
	h.now = func() time.Time { return now }
	addr := h.endpointOf(w.srv.URL).addr
	if _, err := w.post(t, h, "{}"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(h.idleTimeout - time.Second)
	if _, err := w.post(t, h, "{}"); err != nil {
		t.Fatal(err)
	}
	if n := w.conns.Load(); n != 1 {
		t.Fatalf("%d connections within the idle timeout, want 1", n)
	}
	now = now.Add(h.idleTimeout)
	if _, err := w.post(t, h, "{}"); err != nil {
		t.Fatal(err)
	}
	if n := w.conns.Load(); n != 2 {
		t.Fatalf("%d connections after the idle timeout, want 2", n)
	}

	// Three forwards at once hold three connections; one is kept.
	h.maxIdle = 1
	var arrived sync.WaitGroup
	arrived.Add(3)
	hold.Store(&arrived)
	var done sync.WaitGroup
	for range 3 {
		done.Add(1)
		go func() {
			defer done.Done()
			if _, err := h.post(context.Background(), h.endpointOf(w.srv.URL), forward.Path, "sha256=x", []byte("{}"), time.Now().Add(time.Minute)); err != nil {
				t.Error(err)
			}
		}()
	}
	arrived.Wait()
	close(release)
	done.Wait()
	h.mu.Lock()
	kept := len(h.idle[addr])
	h.mu.Unlock()
	if kept != 1 {
		t.Errorf("%d idle connections kept, want maxIdle 1", kept)
	}
	h.closeIdle()
}

func TestHopEndpoint(t *testing.T) {
	h := newHop(DialAt(nil))
	for url, want := range map[string]endpoint{
		"http://ingest-worker.tenant-acme.svc:8080": {addr: "ingest-worker.tenant-acme.svc:8080", host: "ingest-worker.tenant-acme.svc:8080", ok: true},
		"http://worker":                {addr: "worker:80", host: "worker", ok: true},
		"http://127.0.0.1:7001/prefix": {addr: "127.0.0.1:7001", host: "127.0.0.1:7001", path: "/prefix", ok: true},
		"http://[::1]:7001":            {addr: "[::1]:7001", host: "[::1]:7001", ok: true},
		"https://worker:8443":          {},
		"http://user:pw@worker:8080":   {},
		"http://worker:8080?x=1":       {},
		"worker:8080":                  {},
		"http://":                      {},
	} {
		if got := *h.endpointOf(url); got != want {
			t.Errorf("%s: %+v, want %+v", url, got, want)
		}
	}
}

func TestReadAnswer(t *testing.T) {
	for _, tc := range []struct {
		in          string
		code        int
		clean, fail bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDate: x\r\n\r\n", 200, true, false},
		{"HTTP/1.1 200\r\ncontent-length:  3 \r\n\r\nok\n", 200, true, false},
		{"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\nService Unavailable\n", 503, true, false},
		{"HTTP/1.1 401 Unauthorized\nContent-Length: 0\n\n", 401, true, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 200, false, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n", 200, false, false},
		{"HTTP/1.1 200 OK\r\n\r\n", 200, false, false},                         // a body up to the close
		{"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, false, false},    // 1.0 closes
		{"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", 200, false, false}, // too long to read
		{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 200, false, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 200, false, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok", 0, false, true}, // cut short
		{"HTTP/1.1 100 Continue\r\n\r\n", 0, false, true},
		{"HTTP/2 200\r\n\r\n", 0, false, true},
		{"HTTP/1.1 2x0 OK\r\n\r\n", 0, false, true},
		{"HTTP/1.1 2000 OK\r\n\r\n", 0, false, true},
		{"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", 0, false, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", 0, false, true}, // headers cut short
		{"", 0, false, true},
	} {
		code, clean, err := readAnswer(bufio.NewReader(strings.NewReader(tc.in)))
		if code != tc.code || clean != tc.clean || (err != nil) != tc.fail {
			t.Errorf("%q: %d clean %v error %v; want %d clean %v failing %v", tc.in, code, clean, err, tc.code, tc.clean, tc.fail)
		}
	}
}

// A worker URL that is not plain http://host[:port][/path] is forwarded to through
// net/http, with the same request and the same outcome.
func TestForwardThroughNetHTTP(t *testing.T) {
	acme := startWorker(t, "acme", acmeChannels)
	tn := tenantOf("acme", acme, acmeChannels)
	tn.Worker = "http://user:pw@" + acme.addr // userinfo: not for hop
	d := newDoor(t, tn)
	if d.srv.hop.endpointOf(tn.Worker).ok {
		t.Fatal("hop takes a worker URL with userinfo")
	}
	if code := d.postSigned(waText("123456789012345", "wamid.NETHTTP")); code != http.StatusOK {
		t.Fatalf("delivery: %d", code)
	}
	if got := acme.messages(); len(got) != 1 || got[0] != "wa/wamid.NETHTTP" || acme.forwards.Load() != 1 {
		t.Errorf("acme holds %v after %d forwards", got, acme.forwards.Load())
	}
}
