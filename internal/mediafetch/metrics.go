package mediafetch

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Metrics of the fetcher. Labels are closed sets (reasons) or MetaChannel names, chosen
// by the tenant's operators: never a media id, URL, subject or file name.
type Metrics struct {
	fetched      prometheus.Counter
	fetchedBytes prometheus.Counter
	failed       *prometheus.CounterVec
	retries      *prometheus.CounterVec
	refused      *prometheus.CounterVec
	reportErrors prometheus.Counter

	mu            sync.Mutex
	pending       float64
	oldestPending time.Time
	now           func() time.Time
}

// NewMetrics registers the fetcher's metrics on reg (the worker's registry); now is the
// clock the oldest pending file's age is read with at scrape time.
func NewMetrics(reg prometheus.Registerer, now func() time.Time) *Metrics {
	m := &Metrics{
		fetched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "omniflow_worker_files_fetched_total", Help: "Shared files fetched and stored.",
		}),
		fetchedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "omniflow_worker_files_fetched_bytes_total", Help: "Bytes of the shared files fetched (before deduplication).",
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_worker_files_failed_total", Help: "Shared files whose fetching ended for good, by reason (NoToken: kept as metadata only).",
		}, []string{"reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_worker_files_fetch_retries_total", Help: "Fetch attempts that failed transiently and are tried again, by reason.",
		}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniflow_worker_files_token_refused_total", Help: "Times Meta refused a channel's access token (the channel's fetching pauses until its token changes).",
		}, []string{"channel"}),
		reportErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "omniflow_worker_files_report_errors_total", Help: "Media reports that could not be published to the operator.",
		}),
		now: now,
	}
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "omniflow_worker_files_pending", Help: "Shared files waiting to be fetched (the fetch queue's depth).",
	}, func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.pending
	})
	oldest := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "omniflow_worker_files_oldest_pending_age_seconds", Help: "Age of the oldest shared file waiting to be fetched (0 when none is).",
	}, m.oldestAge)
	reg.MustRegister(m.fetched, m.fetchedBytes, m.failed, m.retries, m.refused, m.reportErrors, pending, oldest)
	// Zeros rather than gaps on dashboards.
	for _, r := range failReasons {
		m.failed.WithLabelValues(r)
	}
	for _, r := range retryReasons {
		m.retries.WithLabelValues(r)
	}
	return m
}

func (m *Metrics) oldestAge() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.oldestPending.IsZero() {
		return 0
	}
	return max(m.now().Sub(m.oldestPending).Seconds(), 0)
}

// The methods accept a nil *Metrics: a fetcher without metrics.

func (m *Metrics) fetchedFile(b store.StoredBytes) {
	if m != nil {
		m.fetched.Inc()
		m.fetchedBytes.Add(float64(b.Size))
	}
}

func (m *Metrics) failedFile(reason string) {
	if m != nil {
		m.failed.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) retried(reason string) {
	if m != nil {
		m.retries.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) tokenRefused(channel string) {
	if m != nil {
		m.refused.WithLabelValues(channel).Inc()
	}
}

func (m *Metrics) reportFailed() {
	if m != nil {
		m.reportErrors.Inc()
	}
}

func (m *Metrics) observeQueue(st store.FileStats) {
	if m != nil {
		m.mu.Lock()
		m.pending, m.oldestPending = float64(st.Pending), st.OldestPending
		m.mu.Unlock()
	}
}
