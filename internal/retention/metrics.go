package retention

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Kinds of pruned records, the values of the "kind" label.
const (
	KindMessages = "messages" // messages and reactions
	KindStatuses = "statuses" // delivery statuses and read/delivery receipts
	KindFiles    = "files"
	KindContacts = "contacts"
)

// Metrics of the retention loop. Labels are closed sets.
type Metrics struct {
	prunedTotal    *prometheus.CounterVec
	runs           *prometheus.CounterVec
	lastRun        prometheus.Gauge
	lastSuccess    prometheus.Gauge
	runSeconds     prometheus.Histogram
	maxAgeSeconds  prometheus.Gauge
	reportFailures prometheus.Counter
}

// Run results, the values of the "result" label.
const (
	resultSucceeded = "succeeded"
	resultFailed    = "failed"
)

// NewMetrics creates the loop's metrics on reg (the worker's registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		prunedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_retention_pruned_total", Help: "Records deleted by retention, by kind.",
		}, []string{"kind"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_retention_runs_total", Help: "Retention runs, by result (succeeded, failed).",
		}, []string{"result"}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "omniflow_retention_last_run_timestamp_seconds", Help: "Start of the last retention run, as a Unix time.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "omniflow_retention_last_success_timestamp_seconds", Help: "Start of the last retention run that completed, as a Unix time.",
		}),
		runSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "omniflow_retention_run_duration_seconds", Help: "Duration of one retention run (all its batches).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}),
		maxAgeSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "omniflow_retention_max_age_seconds", Help: "The maximum age retention applies.",
		}),
		reportFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "omniflow_retention_report_errors_total", Help: "Run reports that could not be published to the operator.",
		}),
	}
	reg.MustRegister(m.prunedTotal, m.runs, m.lastRun, m.lastSuccess, m.runSeconds, m.maxAgeSeconds, m.reportFailures)
	// Zeros rather than gaps on dashboards.
	for _, k := range []string{KindMessages, KindStatuses, KindFiles, KindContacts} {
		m.prunedTotal.WithLabelValues(k)
	}
	m.runs.WithLabelValues(resultSucceeded)
	m.runs.WithLabelValues(resultFailed)
	return m
}

func (m *Metrics) policy(maxAge time.Duration) { m.maxAgeSeconds.Set(maxAge.Seconds()) }

// pruned counts one batch, as it commits: a run that fails later still shows what it
// deleted.
func (m *Metrics) pruned(c store.Counts) {
	m.prunedTotal.WithLabelValues(KindMessages).Add(float64(c.Messages))
	m.prunedTotal.WithLabelValues(KindStatuses).Add(float64(c.Statuses))
	m.prunedTotal.WithLabelValues(KindFiles).Add(float64(c.Files))
	m.prunedTotal.WithLabelValues(KindContacts).Add(float64(c.Contacts))
}

func (m *Metrics) run(r Report) {
	m.lastRun.Set(float64(r.StartedAt.UnixMilli()) / 1000)
	m.runSeconds.Observe(r.Duration.Seconds())
	if r.Err != nil {
		m.runs.WithLabelValues(resultFailed).Inc()
		return
	}
	m.runs.WithLabelValues(resultSucceeded).Inc()
	m.lastSuccess.Set(float64(r.StartedAt.UnixMilli()) / 1000)
}

func (m *Metrics) reportFailed() { m.reportFailures.Inc() }
