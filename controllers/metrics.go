package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Tenant names are business identities chosen by the platform team, never
// end-user data, and there are few of them: they are safe as labels.
var (
	erasureAtRiskGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "omniflow_tenant_erasure_overdue",
		Help: "1 when a deactivated tenant's erasure is not complete 24h before its 14-day deadline (or past it), else 0.",
	}, []string{"tenant"})
	erasureDeadlineGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "omniflow_tenant_erasure_deadline_timestamp_seconds",
		Help: "Unix time by which a deactivated tenant's data must be erased (deactivation + 14 days); absent once erased.",
	}, []string{"tenant"})
	erasureDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "omniflow_tenant_erasure_duration_seconds",
		Help: "Time from a tenant's deactivation to its verified erasure.",
		// From an hour to the 14-day promise.
		Buckets: []float64{3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400, 10 * 86400, 13 * 86400, 14 * 86400},
	})
	erasureStepFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omniflow_tenant_erasure_step_failures_total",
		Help: "Tenant erasure steps that failed and will be retried (a data key Secret that cannot be deleted, a database server down), by step.",
	}, []string{"step"})
)

func init() {
	metrics.Registry.MustRegister(erasureAtRiskGauge, erasureDeadlineGauge, erasureDuration, mediaTokenRefused, erasureStepFailures)
}

// forgetTenantMetrics drops a tenant's series once it has nothing left to
// report, so that erased tenants do not linger in every scrape.
func forgetTenantMetrics(name string) {
	erasureAtRiskGauge.DeleteLabelValues(name)
	erasureDeadlineGauge.DeleteLabelValues(name)
}
