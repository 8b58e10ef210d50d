package frontdoor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/omniflowcrm/omniflow-operator/internal/forward"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/webhookhttp"
)

// DefaultForwardTimeout bounds one forward to a worker. Messenger waits 5 s for the
// answer to a delivery (and disables a webhook that keeps failing); the forwards of one
// delivery run in parallel, so 4 s leaves a second for the rest.
const DefaultForwardTimeout = 4 * time.Second

// GCPercent is the front door's GOGC unless $GOGC is set: it keeps nothing, so its live
// heap is a few MiB while each delivery allocates ~15 KiB, and the default 100 would
// collect every few hundred deliveries. 400 spends a few tens of MiB more on a quarter
// of the collections (their CPU competes with the hop's own).
const GCPercent = 400

// DefaultMaxBodyBytes caps a delivery: WhatsApp bodies reach 3 MB.
const DefaultMaxBodyBytes = 4 << 20

// Config configures a Server.
type Config struct {
	// AppSecret verifies Meta's X-Hub-Signature-256.
	AppSecret []byte
	// VerifyToken answers Meta's subscription handshake.
	VerifyToken string
	// ForwardingKey is the key each tenant's forwarding credential is derived from
	// (forward.TenantKey).
	ForwardingKey []byte
	Table         *Table
	// Dial opens the connections to the workers; nil dials the address named (DialAt
	// maps names to other addresses).
	Dial           func(ctx context.Context, network, addr string) (net.Conn, error)
	ForwardTimeout time.Duration
	MaxBodyBytes   int64
	Log            logr.Logger
	// App is the MetaApp this front door serves: the label of the data-deletion
	// requests it files and part of their confirmation codes. Empty: Meta's
	// data-deletion callback answers 501.
	App string
	// PublicBaseURL, when set, is the base of the status page's URL answered to Meta's
	// data-deletion callback (e.g. https://hooks.example.com/apps/shared); otherwise it
	// is derived from the callback's request.
	PublicBaseURL string
}

// Server is the front door's HTTP side.
type Server struct {
	cfg Config
	m   *Metrics
	// hop carries the forwards; client the data-deletion calls and the forwards to a
	// worker URL hop does not take (not plain http).
	hop    *hop
	client *http.Client
	// verifier checks Meta's signature with the app secret.
	verifier *meta.Verifier
	// creds caches each tenant's derived forwarding key and signer (tenant name ->
	// *tenantCred): the derivation is two HMACs, per delivery otherwise.
	creds sync.Map
	// queues holds each tenant's forward queue by object (queueKey -> *forwardQueue).
	queues sync.Map
	// bufs holds delivery bodies' buffers for reuse.
	bufs sync.Pool
}

type tenantCred struct {
	key    []byte
	signer *forward.Signer
}

// Delivery results (the "result" label of omniflow_frontdoor_deliveries_total).
const (
	ResultForwarded    = "forwarded"     // 200: every worker concerned committed its parts
	ResultAcknowledged = "acknowledged"  // 200: authentic, no part for any tenant
	ResultUnauthorized = "unauthorized"  // 401: Meta's signature missing or wrong
	ResultBadRequest   = "bad_request"   // 400: not a Meta envelope, or unreadable
	ResultTooLarge     = "too_large"     // 413
	ResultNotSynced    = "not_synced"    // 503: the routing table is not filled yet
	ResultWorkerFailed = "worker_failed" // 503: a worker did not commit; Meta retries
)

// Forward results (the "result" label of omniflow_frontdoor_forwards_total).
const (
	ForwardCommitted = "committed"
	ForwardRefused   = "refused" // the worker answered 4xx: a credential or configuration fault
	ForwardFailed    = "failed"  // 5xx, timeout or unreachable
)

// Metrics of the front door. Labels are closed sets: never an id or a tenant's data.
type Metrics struct {
	Registry   *prometheus.Registry
	deliveries *prometheus.CounterVec
	unrouted   *prometheus.CounterVec
	forwards   *prometheus.CounterVec
	deletions  *prometheus.CounterVec
	seconds    prometheus.Histogram
	batch      prometheus.Histogram
}

func newMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_frontdoor_deliveries_total", Help: "Meta deliveries (POSTs) by result.",
		}, []string{"result"}),
		unrouted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_frontdoor_parts_unrouted_total", Help: "Authentic parts of deliveries that no tenant serves: acknowledged, stored nowhere.",
		}, []string{"kind", "reason"}),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_frontdoor_forwards_total", Help: "Forwards of a tenant's parts to its worker, by result.",
		}, []string{"result"}),
		deletions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_frontdoor_deletion_callbacks_total", Help: "Meta's data-deletion callbacks at the app's URL, by result.",
		}, []string{"result"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "omniflow_frontdoor_delivery_duration_seconds", Help: "Time from Meta's request to the answer.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "omniflow_frontdoor_forward_deliveries", Help: "Deliveries (their parts for one tenant) per forward: more than one when they arrived while the tenant's forwards were all in flight.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}),
	}
	m.Registry.MustRegister(m.deliveries, m.unrouted, m.forwards, m.deletions, m.seconds, m.batch,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// NewServer returns a front door; it answers deliveries 503 until cfg.Table is synced.
func NewServer(cfg Config) (*Server, error) {
	if len(cfg.AppSecret) == 0 || cfg.VerifyToken == "" {
		return nil, errors.New("frontdoor: the app secret and the verify token are required")
	}
	if len(cfg.ForwardingKey) < forward.MinKeyBytes {
		return nil, fmt.Errorf("frontdoor: the forwarding key must have at least %d bytes", forward.MinKeyBytes)
	}
	if cfg.Table == nil {
		return nil, errors.New("frontdoor: a routing table is required")
	}
	if cfg.Dial == nil {
		cfg.Dial = DialAt(nil)
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = DefaultForwardTimeout
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return &Server{cfg: cfg, m: newMetrics(), hop: newHop(cfg.Dial), client: newClient(cfg.Dial), verifier: meta.NewVerifier(cfg.AppSecret)}, nil
}

// DialAt returns a dialer of the workers' addresses: dialAt maps a worker's host:port
// to the address dialed instead (tests and local runs, where a worker Service's DNS
// name resolves nowhere); nil dials as named.
func DialAt(dialAt map[string]string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if to, ok := dialAt[addr]; ok {
			addr = to
		}
		return d.DialContext(ctx, network, addr)
	}
}

// newClient returns the client of the data-deletion calls: kept-alive connections to
// each worker, no proxy, no compression (loopback or in-cluster hops: gzip would cost
// CPU to save nothing).
func newClient(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
		DisableCompression: true, DialContext: dial,
	}}
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.m }

// Handler routes the front door's endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /webhooks/meta", s.handleVerify)
	mux.HandleFunc("POST /webhooks/meta", s.handleDelivery)
	mux.HandleFunc("POST /meta/data-deletion", s.handleDataDeletion)
	mux.HandleFunc("GET "+deletionStatusPath+"{code}", s.handleDeletionStatus)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { webhookhttp.WriteText(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.cfg.Table.Synced() {
			webhookhttp.WriteText(w, http.StatusServiceUnavailable, "routing table not synced")
			return
		}
		webhookhttp.WriteText(w, http.StatusOK, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.Registry, promhttp.HandlerOpts{}))
	return mux
}

func (s *Server) handleVerify(w http.ResponseWriter, r *http.Request) {
	challenge, ok := meta.Challenge(r.URL.Query(), s.cfg.VerifyToken)
	if !ok {
		s.cfg.Log.Info("Subscription handshake refused")
		webhookhttp.WriteText(w, http.StatusForbidden, "forbidden\n")
		return
	}
	s.cfg.Log.Info("Subscription handshake answered")
	webhookhttp.WriteText(w, http.StatusOK, challenge)
}

func (s *Server) handleDelivery(w http.ResponseWriter, r *http.Request) {
	webhookhttp.Answer(w, r, s.delivery, func(result string, took time.Duration) {
		s.m.deliveries.WithLabelValues(result).Inc()
		s.m.seconds.Observe(took.Seconds())
	})
}

func (s *Server) delivery(w http.ResponseWriter, r *http.Request) (int, string) {
	log := s.cfg.Log
	if !s.cfg.Table.Synced() {
		return http.StatusServiceUnavailable, ResultNotSynced
	}
	buf := s.getBuf(r.ContentLength)
	defer s.putBuf(buf)
	if err := meta.ReadBody(w, r, buf, s.cfg.MaxBodyBytes); err != nil {
		if errors.Is(err, meta.ErrTooLarge) {
			return http.StatusRequestEntityTooLarge, ResultTooLarge
		}
		return http.StatusBadRequest, ResultBadRequest
	}
	body := buf.Bytes()
	// Checked before anything is parsed or forwarded: nothing unsigned reaches a worker.
	if _, err := s.verifier.Verify(body, r.Header.Get(meta.SignatureHeader)); err != nil {
		log.Info("Delivery signature rejected", "reason", err.Error())
		return http.StatusUnauthorized, ResultUnauthorized
	}
	// Routing needs each part's ids, not its records: SplitRouting finds them without
	// normalizing anything (the worker does that), and its parts' Raw point into body.
	parts, entries, err := meta.SplitRouting(body)
	if err != nil {
		log.Info("Signed delivery is not a Meta envelope", "bytes", len(body))
		return http.StatusBadRequest, ResultBadRequest
	}
	byTenant := map[Target][]meta.Part{}
	var order []Target
	for i := range parts {
		targets, reason := s.cfg.Table.Route(&parts[i])
		if len(targets) == 0 {
			s.m.unrouted.WithLabelValues(parts[i].Kind(), reason).Inc()
			continue
		}
		for _, tg := range targets {
			if _, ok := byTenant[tg]; !ok {
				order = append(order, tg)
			}
			byTenant[tg] = append(byTenant[tg], parts[i])
		}
	}
	if len(order) == 0 {
		return http.StatusOK, ResultAcknowledged
	}
	// The common case, a delivery wholly for one tenant, is forwarded as received: no
	// re-encoding.
	whole := len(order) == 1 && len(byTenant[order[0]]) == len(parts)
	deadline := time.Now().Add(s.cfg.ForwardTimeout)
	failed := s.eachTenant(len(order), func(i int) string { return order[i].Tenant }, "Forward failed; Meta will retry the delivery", func(i int) error {
		c := &chunk{parts: byTenant[order[i]], deadline: deadline}
		if whole {
			c.body, c.entries = body, entries
		}
		return s.forward(r.Context(), order[i], c)
	})
	if failed > 0 {
		// The workers that committed absorb the retry as duplicates.
		return http.StatusServiceUnavailable, ResultWorkerFailed
	}
	return http.StatusOK, ResultForwarded
}

// forward sends one tenant's chunk of a delivery to its worker, alone or with others
// (forwardQueue), and returns nil once the worker committed it.
func (s *Server) forward(ctx context.Context, tg Target, c *chunk) error {
	if c.body == nil {
		var err error
		if c.body, err = meta.Envelope(c.parts); err != nil {
			s.m.forwards.WithLabelValues(ForwardFailed).Inc()
			return fmt.Errorf("build forward: %w", err)
		}
	}
	key := queueKey{tg, c.parts[0].Object}
	q, ok := s.queues.Load(key)
	if !ok {
		q, _ = s.queues.LoadOrStore(key, &forwardQueue{maxBytes: int(min(maxBatchBytes, s.cfg.MaxBodyBytes))})
	}
	err := q.(*forwardQueue).send(c, func(batch []*chunk, deadline time.Time) error {
		s.m.batch.Observe(float64(len(batch)))
		body, err := forwardBody(batch)
		if err != nil {
			s.m.forwards.WithLabelValues(ForwardFailed).Inc()
			return err
		}
		return s.post(ctx, tg, body, deadline)
	})
	if errors.Is(err, errQueueTimeout) {
		s.m.forwards.WithLabelValues(ForwardFailed).Inc()
	}
	return err
}

// post sends one forward to tg's worker and returns nil once the worker committed it.
func (s *Server) post(ctx context.Context, tg Target, body []byte, deadline time.Time) error {
	sig := s.cred(tg.Tenant).signer.Sign(body)
	var code int
	var err error
	if e := s.hop.endpointOf(tg.Worker); e.ok {
		code, err = s.hop.post(ctx, e, forward.Path, sig, body, deadline)
	} else {
		code, err = s.postClient(ctx, tg.Worker+forward.Path, sig, body, deadline)
	}
	if err != nil {
		s.m.forwards.WithLabelValues(ForwardFailed).Inc()
		return fmt.Errorf("forward to worker: %w", err)
	}
	switch {
	case code == http.StatusOK:
		s.m.forwards.WithLabelValues(ForwardCommitted).Inc()
		return nil
	case code >= 400 && code < 500:
		s.m.forwards.WithLabelValues(ForwardRefused).Inc()
	default:
		s.m.forwards.WithLabelValues(ForwardFailed).Inc()
	}
	return fmt.Errorf("worker answered %d", code)
}

// postClient is a forward through net/http, for a worker URL hop does not take. As with
// hop, only the deadline ends it: it may carry other deliveries than ctx's.
func (s *Server) postClient(ctx context.Context, url, sig string, body []byte, deadline time.Time) (int, error) {
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("forward request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(forward.SignatureHeader, sig)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// cred is tenant's derived forwarding key and its signer, made once.
func (s *Server) cred(tenant string) *tenantCred {
	if c, ok := s.creds.Load(tenant); ok {
		return c.(*tenantCred)
	}
	key := forward.TenantKey(s.cfg.ForwardingKey, tenant)
	c, _ := s.creds.LoadOrStore(tenant, &tenantCred{key: key, signer: forward.NewSigner(key, tenant)})
	return c.(*tenantCred)
}

// getBuf returns a buffer for a body of size bytes (-1: unknown), from the pool.
func (s *Server) getBuf(size int64) *bytes.Buffer {
	buf, _ := s.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	if size > 0 && size <= s.cfg.MaxBodyBytes {
		buf.Grow(int(size) + bytes.MinRead) // ReadFrom wants MinRead spare to stop at EOF
	}
	return buf
}

func (s *Server) putBuf(buf *bytes.Buffer) {
	if buf.Cap() <= 1<<20 { // rare huge bodies are not pinned in the pool
		s.bufs.Put(buf)
	}
}

// each runs f(0..n-1) at once and returns their errors by index. One runs in the
// caller's goroutine: most deliveries concern one tenant.
func each(n int, f func(i int) error) []error {
	errs := make([]error, n)
	if n == 1 {
		errs[0] = f(0)
		return errs
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	return errs
}

// eachTenant runs f for n tenants at once, logs each failure with msg and the tenant's
// name, and returns how many failed.
func (s *Server) eachTenant(n int, tenant func(i int) string, msg string, f func(i int) error) int {
	failed := 0
	for i, err := range each(n, f) {
		if err != nil {
			failed++
			s.cfg.Log.Info(msg, "tenant", tenant(i), "error", err.Error())
		}
	}
	return failed
}
