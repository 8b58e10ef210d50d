package frontdoor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/forward"
)

// hop sends the forwards to the workers over kept-alive HTTP/1.1 connections, writing
// the request and reading the answer in the caller's goroutine. http.Transport hands
// every request to a writer goroutine and every answer back from a reader goroutine
// (four goroutine switches and their channel operations per forward); profiled under
// the bench load, that machinery cost the front door about a fifth of its CPU. A
// connection here carries one forward at a time and goes back to its worker's idle list
// once the answer is read whole.
type hop struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int           // idle connections kept per worker
	idleTimeout time.Duration // an idle connection older than this is closed, not reused
	now         func() time.Time

	mu   sync.Mutex
	idle map[string][]*hopConn // by worker address (host:port as named)
	// endpoints caches each worker base URL's parsed form (worker URL -> *endpoint).
	endpoints sync.Map
}

// endpoint is where a worker base URL's forwards go.
type endpoint struct {
	addr string // host:port as named in the URL (dialAt may map it)
	host string // the Host header
	path string // the URL's path, before forward.Path
	ok   bool   // false: not plain http://host[:port][/path]; such a worker gets net/http
}

type hopConn struct {
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	used time.Time // when it went idle
}

func newHop(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *hop {
	return &hop{dial: dial, maxIdle: 256, idleTimeout: 90 * time.Second, now: time.Now, idle: map[string][]*hopConn{}}
}

// endpointOf parses a worker's base URL once.
func (h *hop) endpointOf(worker string) *endpoint {
	if e, ok := h.endpoints.Load(worker); ok {
		return e.(*endpoint)
	}
	e := &endpoint{}
	if u, err := url.Parse(worker); err == nil && u.Scheme == "http" && u.Host != "" && u.User == nil && u.RawQuery == "" && u.Fragment == "" {
		e.ok = true
		e.host = u.Host
		e.addr = u.Host
		if u.Port() == "" {
			e.addr = net.JoinHostPort(u.Hostname(), "80")
		}
		e.path = u.EscapedPath()
	}
	v, _ := h.endpoints.LoadOrStore(worker, e)
	return v.(*endpoint)
}

// forwardSignatureLine starts the forward signature's header line.
const forwardSignatureLine = forward.SignatureHeader + ": "

// errStale means a reused connection turned out closed before any answer came: the
// forward is sent again on a new connection.
var errStale = errors.New("idle connection closed by the worker")

// post sends body to path on the worker at e with the forward signature sig and returns
// the worker's status code. The forward ends by deadline (the forward timeout, well
// inside Meta's); ctx only carries values to the dialer. Meta's request going away does
// not cut a forward short: it may carry other deliveries too, and a context watch per
// forward cost more CPU than the rare forward it would stop a few seconds early, whose
// commit the worker absorbs as a duplicate anyway.
func (h *hop) post(ctx context.Context, e *endpoint, path, sig string, body []byte, deadline time.Time) (int, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := h.get(ctx, e.addr, deadline)
		if err != nil {
			return 0, fmt.Errorf("dial worker: %w", err)
		}
		code, err := h.exchange(c, reused, e, path, sig, body, deadline)
		if err == nil {
			return code, nil
		}
		_ = c.c.Close()
		// A worker closes an idle connection when it likes (its idle timeout, a
		// restart); a forward it never read is safe to send again, and one it did read
		// would only be a duplicate, which the worker absorbs.
		if !errors.Is(err, errStale) || attempt > 0 {
			return 0, err
		}
	}
}

// exchange writes one request on c and reads its answer; the connection goes back to
// the idle list only when the exchange left it clean.
func (h *hop) exchange(c *hopConn, reused bool, e *endpoint, path, sig string, body []byte, deadline time.Time) (int, error) {
	if err := c.c.SetDeadline(deadline); err != nil {
		return 0, fmt.Errorf("set deadline: %w", err)
	}
	w := c.w
	_, _ = w.WriteString("POST ")
	_, _ = w.WriteString(e.path)
	_, _ = w.WriteString(path)
	_, _ = w.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = w.WriteString(e.host)
	_, _ = w.WriteString("\r\nUser-Agent: omniflow-frontdoor\r\nContent-Type: application/json\r\nContent-Length: ")
	var num [20]byte
	_, _ = w.Write(strconv.AppendInt(num[:0], int64(len(body)), 10))
	_, _ = w.WriteString("\r\n" + forwardSignatureLine)
	_, _ = w.WriteString(sig)
	_, _ = w.WriteString("\r\n\r\n")
	_, _ = w.Write(body)
	if err := w.Flush(); err != nil {
		if reused {
			return 0, fmt.Errorf("%w: %w", errStale, err)
		}
		return 0, fmt.Errorf("write forward: %w", err)
	}
	if _, err := c.r.Peek(1); err != nil {
		if reused && !isTimeout(err) {
			return 0, fmt.Errorf("%w: %w", errStale, err)
		}
		return 0, fmt.Errorf("read answer: %w", err)
	}
	code, clean, err := readAnswer(c.r)
	if err != nil {
		return 0, fmt.Errorf("read answer: %w", err)
	}
	if clean && c.r.Buffered() == 0 {
		h.put(e.addr, c)
	} else {
		_ = c.c.Close()
	}
	return code, nil
}

// maxAnswerBody is the longest answer body read to keep a connection: a worker answers a
// forward with a status and at most a short text.
const maxAnswerBody = 4096

var errAnswer = errors.New("not an HTTP/1.x answer")

// readAnswer reads a worker's answer to a forward from r: its status code, and whether
// the connection is clean for another forward (the body read whole, no "Connection:
// close"). Only what a Go worker sends is read through (a Content-Length, a short body);
// any other framing (chunked, a body up to the close) leaves the connection unclean,
// to be closed, after the status is known.
func readAnswer(r *bufio.Reader) (code int, clean bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < len("HTTP/1.1 200\n") || string(line[:7]) != "HTTP/1." || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n') {
		return 0, false, errAnswer
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, false, errAnswer
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 { // no 1xx: the front door sends no Expect
		return 0, false, errAnswer
	}
	clean = line[7] == '1'
	length := int64(-1)
	for {
		h, err := r.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, false, errAnswer
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || length >= 0 {
				clean = false
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			clean = false
		case bytes.EqualFold(name, []byte("Connection")) && bytes.Contains(bytes.ToLower(value), []byte("close")):
			clean = false
		}
	}
	if !clean || length < 0 || length > maxAnswerBody {
		return code, false, nil
	}
	if _, err := r.Discard(int(length)); err != nil {
		return 0, false, err
	}
	return code, true, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// get returns an idle connection to addr, the most recently used one, or dials one.
func (h *hop) get(ctx context.Context, addr string, deadline time.Time) (*hopConn, bool, error) {
	now := h.now()
	h.mu.Lock()
	list := h.idle[addr]
	for len(list) > 0 {
		c := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if now.Sub(c.used) < h.idleTimeout {
			h.idle[addr] = list
			h.mu.Unlock()
			return c, true, nil
		}
		// The rest of the list is older still.
		for _, old := range list {
			_ = old.c.Close()
		}
		_ = c.c.Close()
		list = list[:0]
	}
	h.idle[addr] = list
	h.mu.Unlock()
	// A forward may carry other deliveries than the one whose request dials: only the
	// forward's deadline ends the dial.
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	nc, err := h.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &hopConn{c: nc, r: bufio.NewReaderSize(nc, 4096), w: bufio.NewWriterSize(nc, 16<<10)}, false, nil
}

// put returns a clean connection to addr's idle list (LIFO: the warmest is reused first).
func (h *hop) put(addr string, c *hopConn) {
	c.used = h.now()
	h.mu.Lock()
	list := h.idle[addr]
	// The oldest are at the front: those idle too long go (a quiet worker's
	// connections are not kept until it closes them).
	for len(list) > 0 && c.used.Sub(list[0].used) >= h.idleTimeout {
		_ = list[0].c.Close()
		list[0] = nil
		list = list[1:]
	}
	if len(list) >= h.maxIdle {
		h.idle[addr] = list
		h.mu.Unlock()
		_ = c.c.Close()
		return
	}
	h.idle[addr] = append(list, c)
	h.mu.Unlock()
}

// closeIdle closes every idle connection.
func (h *hop) closeIdle() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for addr, list := range h.idle {
		for _, c := range list {
			_ = c.c.Close()
		}
		delete(h.idle, addr)
	}
}
