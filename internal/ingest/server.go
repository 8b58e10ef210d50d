// Package ingest is the worker's HTTP side: Meta's subscription handshake, signed
// deliveries split per change and committed durably before they are acknowledged, and the
// health and metrics endpoints.
package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/forward"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
	"github.com/omniflowcrm/omniflow-operator/internal/webhookhttp"
)

// DefaultMaxBodyBytes caps a delivery: WhatsApp bodies reach 3 MB (meta-webhooks.md §2.3).
const DefaultMaxBodyBytes = 4 << 20

// GCPercent is the worker's GOGC unless $GOGC is set. Its live heap is small (a few MiB
// plus the store's contact cache) while every delivery allocates its body, parts and
// documents, so Go's default 100 collects every few hundred deliveries. 400 costs a few
// tens of MiB of heap (the soft memory limit, from the container's, bounds it) and took
// 8 to 16% off the worker's CPU per delivery of 10 messages in make bench
// (docs/ingest-worker.md).
const GCPercent = 400

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
	// ForwardKey is this tenant's forwarding credential (forward.TenantKey): with it,
	// the worker accepts the parts a webhook front door forwards at forward.Path, signed
	// for Tenant. Empty: that endpoint answers 404.
	ForwardKey []byte
	// VerifyOnly answers 200 right after the signature check, storing nothing. It exists
	// only as the benchmark's baseline: the cost of HTTP and HMAC without durability.
	VerifyOnly bool
}

// Server serves one tenant's webhooks.
type Server struct {
	opts     Options
	store    atomic.Pointer[storeRef]
	stopping atomic.Bool
	// filesCommitted, when set, is told after a commit that stored new files (it wakes
	// the media fetcher; it must not block).
	filesCommitted atomic.Pointer[func()]
	// inflight counts webhook deliveries (direct and forwarded) being answered: the media
	// fetcher yields to them (Busy).
	inflight atomic.Int64
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

// SetFilesCommitted sets what is told, without waiting, after each commit that stored
// new files: the media fetcher's wake-up. The fetch itself never runs on the webhook path.
func (s *Server) SetFilesCommitted(notify func()) { s.filesCommitted.Store(&notify) }

// SetStopping marks the server not ready (graceful shutdown has begun): /readyz fails so
// that no new traffic is routed here. Deliveries that still arrive (on a connection
// kept alive before the listener closed) are stored as usual: the store stays open
// until the HTTP server has finished every request.
func (s *Server) SetStopping() { s.stopping.Store(true) }

// Ready reports whether the worker takes new traffic: it can store deliveries and is
// not shutting down.
func (s *Server) Ready() bool { return !s.stopping.Load() && s.canStore() }

// canStore reports whether deliveries can be stored: the store is open (or nothing is
// stored, in the benchmark baseline).
func (s *Server) canStore() bool { return s.opts.VerifyOnly || s.store.Load() != nil }

// Handler routes the worker's endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /webhooks/meta/{channel}", s.handleVerify)
	mux.HandleFunc("POST /webhooks/meta/{channel}", s.handleDelivery)
	mux.HandleFunc("GET /t/{tenant}/webhooks/meta/{channel}", s.ownTenant(s.handleVerify, false))
	mux.HandleFunc("POST /t/{tenant}/webhooks/meta/{channel}", s.ownTenant(s.handleDelivery, true))
	mux.HandleFunc("POST "+forward.Path, s.handleForwarded)
	mux.HandleFunc("POST "+forward.DeletionPath, s.handleAppDeletion)
	mux.HandleFunc("GET "+forward.DeletionStatusPath+"{code}", s.handleAppDeletionStatus)
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

func writeText(w http.ResponseWriter, code int, body string) { webhookhttp.WriteText(w, code, body) }

// handleVerify answers Meta's subscription handshake. The challenge is echoed only to a
// caller that knows the channel's verify token.
func (s *Server) handleVerify(w http.ResponseWriter, r *http.Request) {
	ch, ok := s.opts.Registry.Lookup(r.PathValue("channel"))
	if !ok {
		writeText(w, http.StatusNotFound, "unknown channel\n")
		return
	}
	challenge, ok := meta.Challenge(r.URL.Query(), ch.VerifyToken)
	if !ok {
		s.opts.Log.Info("Subscription handshake refused", "channel", ch.Name)
		writeText(w, http.StatusForbidden, "forbidden\n")
		return
	}
	s.opts.Log.Info("Subscription handshake answered", "channel", ch.Name)
	writeText(w, http.StatusOK, challenge)
}

func (s *Server) handleDelivery(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r, s.opts.Metrics.deliveries, s.delivery)
}

// Busy reports whether a webhook delivery is being answered right now: background work
// (the media fetcher) yields to deliveries, whose acknowledgement Meta waits for.
func (s *Server) Busy() bool { return s.inflight.Load() > 0 }

// answer runs a POST path, counts its result in results and times it.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, results *prometheus.CounterVec, run func(http.ResponseWriter, *http.Request) (int, string)) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	webhookhttp.Answer(w, r, run, func(result string, took time.Duration) {
		results.WithLabelValues(result).Inc()
		s.opts.Metrics.deliverySeconds.Observe(took.Seconds())
	})
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
	buf, code, result := s.readDelivery(w, r, log)
	if code != 0 {
		return code, result
	}
	defer s.putBuf(buf)
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
	return http.StatusOK, committedResult(res)
}

// committedResult is the metric result of a delivery that was committed.
func committedResult(res store.CommitResult) string {
	if res.MessagesNew+res.StatusesApplied+res.ContactsUpserted+res.MessagesDeleted+res.FilesNew+res.IdentityChanges+res.LeadsNew == 0 {
		return ResultAcknowledged
	}
	return ResultStored
}

// readDelivery reads the body of a delivery into a pooled buffer (give it back with
// putBuf), capped at MaxBodyBytes, once the server is ready. A non-zero code is the
// answer when it could not.
func (s *Server) readDelivery(w http.ResponseWriter, r *http.Request, log logr.Logger) (*bytes.Buffer, int, string) {
	if !s.canStore() {
		return nil, http.StatusServiceUnavailable, ResultNotReady
	}
	buf := s.bufs.Get().(*bytes.Buffer)
	if err := meta.ReadBody(w, r, buf, s.opts.MaxBodyBytes); err != nil {
		s.putBuf(buf)
		if errors.Is(err, meta.ErrTooLarge) {
			return nil, http.StatusRequestEntityTooLarge, ResultTooLarge
		}
		log.V(1).Info("Delivery body unreadable", "error", err.Error())
		return nil, http.StatusBadRequest, ResultBadRequest
	}
	return buf, 0, ""
}

func (s *Server) putBuf(buf *bytes.Buffer) {
	if buf.Cap() <= 1<<20 { // do not pin rare huge buffers in the pool
		buf.Reset()
		s.bufs.Put(buf)
	}
}

// handleForwarded takes the parts a webhook front door forwards for this tenant: the
// front door checked Meta's signature with the app secret, and proves with the tenant's
// forwarding credential that it did. Each part is handled by the channel its ids name;
// the answer is 200 only once they are committed, so that the front door can tell Meta.
func (s *Server) handleForwarded(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r, s.opts.Metrics.forwarded, s.forwarded)
}

func (s *Server) forwarded(w http.ResponseWriter, r *http.Request) (int, string) {
	log := s.opts.Log.WithValues("forwarded", true)
	if len(s.opts.ForwardKey) == 0 || s.opts.Tenant == "" {
		return http.StatusNotFound, ResultUnknownChannel
	}
	buf, code, result := s.readDelivery(w, r, log)
	if code != 0 {
		return code, result
	}
	defer s.putBuf(buf)
	body := buf.Bytes()
	if err := forward.Verify(s.opts.ForwardKey, s.opts.Tenant, body, r.Header.Get(forward.SignatureHeader)); err != nil {
		log.Info("Forwarded delivery refused", "reason", err.Error())
		return http.StatusUnauthorized, ResultUnauthorized
	}
	parts, err := meta.Split(body)
	if err != nil {
		log.Info("Forwarded delivery is not a Meta envelope", "bytes", len(body))
		return http.StatusBadRequest, ResultBadRequest
	}
	reg := s.opts.Registry
	res, err := s.ingest(r.Context(), parts, func(p *meta.Part) (channels.Channel, bool) {
		if owner, ok := reg.Owner(p); ok {
			return owner, true
		}
		// A WhatsApp account-level change names its business account only.
		if p.Platform == meta.WhatsApp && p.AccountID == p.EntryID {
			if chs := reg.BusinessAccount(p.EntryID); len(chs) > 0 {
				return chs[0], true
			}
		}
		return channels.Channel{}, false
	}, func(*channels.Channel) bool { return true })
	if err != nil {
		log.Error(err, "Forwarded delivery not stored")
		return http.StatusServiceUnavailable, ResultStoreError
	}
	return http.StatusOK, committedResult(res)
}

// Ingest attributes, normalizes and commits the parts of one delivery authenticated for
// channel ch (its signature checked with ch's app secret). Each part is judged alone by
// its own ids and handled by the channel they name: ch itself, or another channel of this
// worker signed for by the same Meta app (same app secret), whichever URL the delivery
// came in on. A part of an account this worker does not serve under that app is counted
// as foreign and acknowledged. A caller may pass a whole delivery or single parts.
// It returns after the records of every channel concerned are durably committed, in one
// commit. Parts and items that cannot be stored are counted and left out, never returned
// as errors: an error means the store failed, and Meta retries until it does not.
func (s *Server) Ingest(ctx context.Context, ch channels.Channel, parts []meta.Part) (store.CommitResult, error) {
	return s.ingest(ctx, parts, func(p *meta.Part) (channels.Channel, bool) {
		if ch.Owns(p) {
			return ch, true
		}
		if owner, ok := s.opts.Registry.Owner(p); ok && ch.SameApp(&owner) {
			return owner, true
		}
		return channels.Channel{}, false
	}, func(o *channels.Channel) bool { return o.Name == ch.Name || ch.SameApp(o) })
}

// ingest commits the parts that route finds a channel for, and acts on account removal
// notices for the channels mayOffboard admits (those the delivery's sender speaks for).
func (s *Server) ingest(ctx context.Context, parts []meta.Part, route func(*meta.Part) (channels.Channel, bool), mayOffboard func(*channels.Channel) bool) (store.CommitResult, error) {
	m := s.opts.Metrics
	var batch meta.Batch
	var offboards []offboardNotice
	platform := ""
	for i := range parts {
		p := &parts[i]
		// Judged before ownership: PARTNER_APP_UNINSTALLED names the WABA only inside
		// its value, so the part is not attributed to a channel by its entry.id.
		if ev, ids, ok := meta.AccountRemoval(p); ok {
			for _, o := range s.opts.Registry.BusinessAccount(ids...) {
				if mayOffboard(&o) {
					offboards = append(offboards, offboardNotice{o.Name, ev})
				}
			}
		}
		owner, ok := route(p)
		if !ok {
			m.ignored.WithLabelValues(p.Kind(), ReasonForeignAccount).Inc()
			continue
		}
		parsed, err := s.parse(p)
		if err != nil {
			m.ignored.WithLabelValues(p.Kind(), ReasonInvalid).Inc()
			s.opts.Log.Info("Invalid change acknowledged", "channel", owner.Name, "kind", p.Kind(), "error", err.Error())
			continue
		}
		for _, k := range parsed.Ignored {
			m.ignored.WithLabelValues(k, ReasonUnstoredKind).Inc()
		}
		for _, inv := range parsed.Invalid {
			m.ignored.WithLabelValues(inv.Kind, ReasonInvalid).Inc()
			s.opts.Log.Info("Invalid event acknowledged", "channel", owner.Name, "kind", inv.Kind, "error", inv.Err.Error())
		}
		// The parser should never yield a record the store refuses, but if it did, the
		// whole delivery would fail on every retry: Meta would redeliver it for days and
		// its valid parts would never be stored. Only this part is left out.
		if err := store.Validate(&parsed.Batch); err != nil {
			m.ignored.WithLabelValues(p.Kind(), ReasonInvalid).Inc()
			s.opts.Log.Info("Unstorable change acknowledged", "channel", owner.Name, "kind", p.Kind(), "error", err.Error())
			continue
		}
		// Stamped per part: one delivery may carry several of this worker's channels.
		parsed.Batch.SetChannel(owner.Name)
		batch.Append(&parsed.Batch)
		platform = string(owner.Platform)
	}
	if batch.Len() == 0 {
		s.offboard(offboards)
		return store.CommitResult{}, nil
	}
	ref := s.store.Load()
	if ref == nil {
		return store.CommitResult{}, errors.New("store not open")
	}
	res, err := ref.Commit(ctx, &batch)
	if err != nil {
		return res, fmt.Errorf("commit %d records: %w", batch.Len(), err)
	}
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
	if notify := s.filesCommitted.Load(); notify != nil && res.FilesNew > 0 {
		(*notify)()
	}
	s.opts.Log.V(1).Info("Delivery committed", "new", res.MessagesNew,
		"duplicates", res.MessagesDuplicate, "statuses", res.StatusesApplied+res.StatusesStale, "records", batch.Len())
	// After the commit: what came in the same delivery before the notice is kept.
	s.offboard(offboards)
	return res, nil
}

// offboardNotice is an account removal notice for one channel.
type offboardNotice struct{ channel, event string }

// offboard acts on the account removal notices of one delivery.
func (s *Server) offboard(notices []offboardNotice) {
	for _, n := range notices {
		if s.opts.Offboard == nil {
			s.opts.Log.Info("Meta reports the business left; acknowledged (standalone: remove the channel from the file)", "channel", n.channel, "event", n.event)
			continue
		}
		s.opts.Log.Info("Meta reports the business left; channel taken out of service", "channel", n.channel, "event", n.event)
		s.opts.Offboard(n.channel, n.event)
	}
}
