package ingest

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Delivery results, the values of the "result" label.
const (
	ResultStored         = "stored"       // 200: records committed
	ResultAcknowledged   = "acknowledged" // 200: authentic, nothing (new) to store
	ResultUnauthorized   = "unauthorized" // 401
	ResultTooLarge       = "too_large"    // 413
	ResultBadRequest     = "bad_request"  // 400
	ResultUnknownChannel = "unknown_channel"
	ResultNotReady       = "not_ready"   // 503 before the store is open
	ResultStoreError     = "store_error" // 503: not stored, Meta will retry
)

// Reasons an authentic event is acknowledged without being stored.
const (
	ReasonUnstoredKind   = "unstored_kind"   // an event kind this worker does not keep yet
	ReasonForeignAccount = "foreign_account" // ids of an account that is not this channel's
	ReasonInvalid        = "invalid"         // authentic but unusable (e.g. no message id)
)

// Metrics of one worker. Labels are closed sets: never an id, a phone number or text.
type Metrics struct {
	Registry        *prometheus.Registry
	deliveries      *prometheus.CounterVec
	forwarded       *prometheus.CounterVec
	deliverySeconds prometheus.Histogram
	messages        *prometheus.CounterVec
	duplicates      *prometheus.CounterVec
	leads           *prometheus.CounterVec
	statuses        *prometheus.CounterVec
	ignored         *prometheus.CounterVec
	sigFallback     prometheus.Counter
	commitSeconds   prometheus.Histogram
	groupSize       prometheus.Histogram
	commitErrors    prometheus.Counter
}

// NewMetrics creates the worker's metrics on a registry of its own (so tests and several
// servers in one process do not collide), with the Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_ingest_deliveries_total", Help: "Webhook deliveries (POSTs) by result.",
		}, []string{"result"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_ingest_forwarded_total", Help: "Requests of the webhook front door (forwarded parts) by result.",
		}, []string{"result"}),
		deliverySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "omniflow_ingest_delivery_duration_seconds", Help: "Time from request to response for webhook deliveries.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_ingest_messages_stored_total", Help: "Messages stored for the first time.",
		}, []string{"platform"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_ingest_messages_duplicate_total", Help: "Redelivered (or already deleted) messages absorbed.",
		}, []string{"platform"}),
		leads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_ingest_leads_stored_total", Help: "Lead attribution records (referrals, opt-ins) stored for the first time.",
		}, []string{"platform"}),
		statuses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_ingest_statuses_total", Help: "Message statuses by outcome (applied, or stale: behind the stored state).",
		}, []string{"outcome"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_ingest_events_ignored_total", Help: "Authentic events acknowledged without being stored, by kind and reason.",
		}, []string{"kind", "reason"}),
		sigFallback: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "omniflow_ingest_signature_fallback_total", Help: "Signatures that matched only the escaped-unicode form of the body.",
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "omniflow_store_commit_duration_seconds", Help: "Duration of one group commit (transaction and fsync).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		groupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "omniflow_store_commit_group_size", Help: "Deliveries committed together in one transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "omniflow_store_commit_errors_total", Help: "Group commits that failed.",
		}),
	}
	m.Registry.MustRegister(m.deliveries, m.forwarded, m.deliverySeconds, m.messages, m.duplicates, m.leads, m.statuses, m.ignored,
		m.sigFallback, m.commitSeconds, m.groupSize, m.commitErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Pre-create the result series so dashboards see zeros rather than gaps.
	for _, r := range []string{ResultStored, ResultAcknowledged, ResultUnauthorized, ResultTooLarge, ResultBadRequest,
		ResultUnknownChannel, ResultNotReady, ResultStoreError} {
		m.deliveries.WithLabelValues(r)
	}
	return m
}

// ObserveCommit implements sqlite.Observer.
func (m *Metrics) ObserveCommit(groupSize int, took time.Duration, err error) {
	m.commitSeconds.Observe(took.Seconds())
	m.groupSize.Observe(float64(groupSize))
	if err != nil {
		m.commitErrors.Inc()
	}
}
