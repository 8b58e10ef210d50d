// Package ingest is the worker's HTTP side: Meta's subscription handshake, signed
// deliveries split per change and committed durably before they are acknowledged, and the
// health and metrics endpoints.
package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
)

// DefaultMaxBodyBytes caps a delivery: WhatsApp bodies reach 3 MB (meta-webhooks.md §2.3).
const DefaultMaxBodyBytes = 4 << 20

// Options configure a Server.
type Options struct {
	Registry     *channels.Registry
	Metrics      *Metrics
	Log          logr.Logger
	MaxBodyBytes int64
	// Tenant is the worker's own tenant. The tenant's Ingress forwards /t/<tenant>/...
	// unchanged, so the webhook routes are also served under that prefix, for this tenant
	// only: a request naming another tenant reached the wrong worker and gets 404. Empty
	// disables the prefixed routes.
	Tenant string
	// Deletions files the DeletionRequests of Meta's data-deletion callback and looks
	// them up for the status page (in a cluster). Nil in standalone mode: both answer 501.
	Deletions *subjecterasure.Desk
	// PublicBaseURL, when set, is the base of the status URL the callback answers (for
	// example https://hooks.example.com/t/acme); otherwise it is derived from the request.
	PublicBaseURL string
	// Offboard takes a channel out of service when Meta says its business removed the
	// app or deleted its WhatsApp account (account_update PARTNER_APP_UNINSTALLED,
	// ACCOUNT_DELETED). In a cluster, the MetaChannel watcher's Offboard; nil standalone,
	// where such deliveries are only acknowledged.
	Offboard func(channel, event string)
	// VerifyOnly answers 200 right after the signature check, storing nothing. It exists
	// only as the benchmark's baseline: the cost of HTTP and HMAC without durability.
	VerifyOnly bool
}

// Server serves one tenant's webhooks.
type Server struct {
	opts     Options
	store    atomic.Pointer[storeRef]
	stopping atomic.Bool
	bufs     sync.Pool
	// parse is (*meta.Part).Parse; tests replace it to reach the guard against records
	// the store refuses, which the parser itself never yields.
	parse func(*meta.Part) (meta.Parsed, error)
}

type storeRef struct{ store.Store }

// NewServer returns a server that answers 503 to deliveries until SetStore is called.
func NewServer(opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	s := &Server{opts: opts, parse: (*meta.Part).Parse}
	s.bufs.New = func() any { return new(bytes.Buffer) }
	return s
}

// SetStore makes the server ready: deliveries are committed to st from now on.
func (s *Server) SetStore(st store.Store) { s.store.Store(&storeRef{st}) }

// SetStopping marks the server not ready (graceful shutdown has begun).
func (s *Server) SetStopping() { s.stopping.Store(true) }

// Ready reports whether deliveries can be stored.
func (s *Server) Ready() bool {
	return !s.stopping.Load() && (s.opts.VerifyOnly || s.store.Load() != nil)
}

// Handler routes the worker's endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /webhooks/meta/{channel}", s.handleVerify)
	mux.HandleFunc("POST /webhooks/meta/{channel}", s.handleDelivery)
	mux.HandleFunc("GET /t/{tenant}/webhooks/meta/{channel}", s.ownTenant(s.handleVerify, false))
	mux.HandleFunc("POST /t/{tenant}/webhooks/meta/{channel}", s.ownTenant(s.handleDelivery, true))
	mux.HandleFunc("POST /meta/data-deletion/{channel}", s.handleDataDeletion)
	mux.HandleFunc("GET /meta/deletion-status/{code}", s.handleDeletionStatus)
	mux.HandleFunc("POST /t/{tenant}/meta/data-deletion/{channel}", s.ownTenant(s.handleDataDeletion, false))
	mux.HandleFunc("GET /t/{tenant}/meta/deletion-status/{code}", s.ownTenant(s.handleDeletionStatus, false))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			writeText(w, http.StatusServiceUnavailable, "not ready")
			return
		}
		writeText(w, http.StatusOK, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Metrics.Registry, promhttp.HandlerOpts{}))
	return mux
}

// ownTenant serves a /t/{tenant}/ route only when {tenant} is this worker's tenant.
// Anything else answers like an unknown channel (and is counted as one for deliveries),
// so that a misrouted request reveals nothing about this tenant's channels.
func (s *Server) ownTenant(next http.HandlerFunc, delivery bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Tenant == "" || r.PathValue("tenant") != s.opts.Tenant {
			if delivery {
				s.opts.Metrics.deliveries.WithLabelValues(ResultUnknownChannel).Inc()
			}
			writeText(w, http.StatusNotFound, "unknown channel\n")
			return
		}
		next(w, r)
	}
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// handleVerify answers Meta's subscription handshake. The challenge is echoed only to a
// caller that knows the channel's verify token.
func (s *Server) handleVerify(w http.ResponseWriter, r *http.Request) {
	ch, ok := s.opts.Registry.Lookup(r.PathValue("channel"))
	if !ok {
		writeText(w, http.StatusNotFound, "unknown channel\n")
		return
	}
	q := r.URL.Query()
	challenge := q.Get("hub.challenge")
	if q.Get("hub.mode") != "subscribe" || challenge == "" || !meta.VerifyToken(ch.VerifyToken, q.Get("hub.verify_token")) {
		s.opts.Log.Info("Subscription handshake refused", "channel", ch.Name)
		writeText(w, http.StatusForbidden, "forbidden\n")
		return
	}
	s.opts.Log.Info("Subscription handshake answered", "channel", ch.Name)
	writeText(w, http.StatusOK, challenge)
}

func (s *Server) handleDelivery(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code, result := s.delivery(w, r)
	s.opts.Metrics.deliveries.WithLabelValues(result).Inc()
	s.opts.Metrics.deliverySeconds.Observe(time.Since(start).Seconds())
	if code == http.StatusOK {
		w.WriteHeader(code)
		return
	}
	writeText(w, code, http.StatusText(code)+"\n")
}

// delivery runs the POST path and returns the status code and the metric result. It
// writes nothing itself; w is only handed to MaxBytesReader, which then tells the server
// to close the connection rather than drain an oversized body.
func (s *Server) delivery(w http.ResponseWriter, r *http.Request) (int, string) {
	log := s.opts.Log
	name := r.PathValue("channel")
	ch, ok := s.opts.Registry.Lookup(name)
	if !ok {
		return http.StatusNotFound, ResultUnknownChannel
	}
	log = log.WithValues("channel", ch.Name)
	if !s.Ready() {
		return http.StatusServiceUnavailable, ResultNotReady
	}
	buf := s.bufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 1<<20 { // do not pin rare huge buffers in the pool
			buf.Reset()
			s.bufs.Put(buf)
		}
	}()
	buf.Reset()
	if r.ContentLength > s.opts.MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, ResultTooLarge
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)); err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return http.StatusRequestEntityTooLarge, ResultTooLarge
		}
		log.V(1).Info("Delivery body unreadable", "error", err.Error())
		return http.StatusBadRequest, ResultBadRequest
	}
	body := buf.Bytes()
	fallback, err := meta.VerifySignature([]byte(ch.AppSecret), body, r.Header.Get(meta.SignatureHeader))
	if err != nil {
		// Never log the header or body: only why it failed.
		log.Info("Delivery signature rejected", "reason", err.Error())
		return http.StatusUnauthorized, ResultUnauthorized
	}
	if fallback {
		s.opts.Metrics.sigFallback.Inc()
	}
	if s.opts.VerifyOnly {
		return http.StatusOK, ResultAcknowledged
	}
	parts, err := meta.Split(body)
	if err != nil {
		log.Info("Signed delivery is not a Meta envelope", "bytes", len(body))
		return http.StatusBadRequest, ResultBadRequest
	}
	res, err := s.Ingest(r.Context(), ch, parts)
	if err != nil {
		// Not stored, so not acknowledged: Meta retries and dedupe absorbs any overlap.
		log.Error(err, "Delivery not stored")
		return http.StatusServiceUnavailable, ResultStoreError
	}
	if res.MessagesNew+res.StatusesApplied+res.ContactsUpserted+res.MessagesDeleted+res.FilesNew+res.IdentityChanges+res.LeadsNew == 0 {
		return http.StatusOK, ResultAcknowledged
	}
	return http.StatusOK, ResultStored
}

// Ingest attributes, normalizes and commits the parts of one authenticated delivery for
// channel ch. Each part is judged alone by its own ids, so a caller may pass a whole
// delivery or single parts (what a cluster-wide front door would forward). It returns
// after the records are durably committed. Parts and items that cannot be stored are
// counted and left out, never returned as errors: an error means the store failed, and
// Meta retries until it does not.
func (s *Server) Ingest(ctx context.Context, ch channels.Channel, parts []meta.Part) (store.CommitResult, error) {
	m := s.opts.Metrics
	var batch meta.Batch
	offboard := ""
	for i := range parts {
		p := &parts[i]
		// Judged before ownership: PARTNER_APP_UNINSTALLED names the WABA only inside
		// its value, so the part is not attributed to the channel by its entry.id.
		if ch.WhatsApp != nil {
			if ev, ids, ok := meta.AccountRemoval(p); ok && slices.Contains(ids, string(ch.WhatsApp.BusinessAccountID)) {
				offboard = ev
			}
		}
		if !ch.Owns(p) {
			m.ignored.WithLabelValues(p.Kind(), ReasonForeignAccount).Inc()
			continue
		}
		parsed, err := s.parse(p)
		if err != nil {
			m.ignored.WithLabelValues(p.Kind(), ReasonInvalid).Inc()
			s.opts.Log.Info("Invalid change acknowledged", "channel", ch.Name, "kind", p.Kind(), "error", err.Error())
			continue
		}
		for _, k := range parsed.Ignored {
			m.ignored.WithLabelValues(k, ReasonUnstoredKind).Inc()
		}
		for _, inv := range parsed.Invalid {
			m.ignored.WithLabelValues(inv.Kind, ReasonInvalid).Inc()
			s.opts.Log.Info("Invalid event acknowledged", "channel", ch.Name, "kind", inv.Kind, "error", inv.Err.Error())
		}
		// The parser should never yield a record the store refuses, but if it did, the
		// whole delivery would fail on every retry: Meta would redeliver it for days and
		// its valid parts would never be stored. Only this part is left out.
		if err := store.Validate(&parsed.Batch); err != nil {
			m.ignored.WithLabelValues(p.Kind(), ReasonInvalid).Inc()
			s.opts.Log.Info("Unstorable change acknowledged", "channel", ch.Name, "kind", p.Kind(), "error", err.Error())
			continue
		}
		batch.Append(&parsed.Batch)
	}
	if batch.Len() == 0 {
		s.offboard(ch, offboard)
		return store.CommitResult{}, nil
	}
	ref := s.store.Load()
	if ref == nil {
		return store.CommitResult{}, errors.New("store not open")
	}
	batch.SetChannel(ch.Name)
	res, err := ref.Commit(ctx, &batch)
	if err != nil {
		return res, fmt.Errorf("commit %d records: %w", batch.Len(), err)
	}
	platform := string(ch.Platform)
	if res.MessagesNew > 0 {
		m.messages.WithLabelValues(platform).Add(float64(res.MessagesNew))
	}
	if res.MessagesDuplicate > 0 {
		m.duplicates.WithLabelValues(platform).Add(float64(res.MessagesDuplicate))
	}
	if res.LeadsNew > 0 {
		m.leads.WithLabelValues(platform).Add(float64(res.LeadsNew))
	}
	if res.StatusesApplied > 0 {
		m.statuses.WithLabelValues("applied").Add(float64(res.StatusesApplied))
	}
	if res.StatusesStale > 0 {
		m.statuses.WithLabelValues("stale").Add(float64(res.StatusesStale))
	}
	s.opts.Log.V(1).Info("Delivery committed", "channel", ch.Name, "new", res.MessagesNew,
		"duplicates", res.MessagesDuplicate, "statuses", res.StatusesApplied+res.StatusesStale, "leads", res.LeadsNew, "records", batch.Len())
	// After the commit: what came in the same delivery before the notice is kept.
	s.offboard(ch, offboard)
	return res, nil
}

// offboard acts on an account removal notice for ch (event empty: none came).
func (s *Server) offboard(ch channels.Channel, event string) {
	if event == "" {
		return
	}
	if s.opts.Offboard == nil {
		s.opts.Log.Info("Meta reports the business left; acknowledged (standalone: remove the channel from the file)", "channel", ch.Name, "event", event)
		return
	}
	s.opts.Log.Info("Meta reports the business left; channel taken out of service", "channel", ch.Name, "event", event)
	s.opts.Offboard(ch.Name, event)
}
