package reseal

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Metrics of the encryption pass. No labels.
type Metrics struct {
	pending       prometheus.Gauge
	resealed      prometheus.Counter
	errors        prometheus.Counter
	activeVersion prometheus.Gauge
	sealedVersion prometheus.Gauge
}

// NewMetrics creates the pass's metrics on reg (the worker's registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "omniflow_encryption_pending",
			Help: "1 while records of the store are not all sealed under the active key version (a pass is due or under way), else 0.",
		}),
		resealed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "omniflow_encryption_records_resealed_total",
			Help: "Records (documents, file chunks) the encryption pass sealed or re-sealed under the active key version.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "omniflow_encryption_pass_errors_total", Help: "Encryption passes cut short by an error.",
		}),
		activeVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "omniflow_encryption_active_key_version", Help: "The key version new records are sealed under (0: the store does not encrypt).",
		}),
		sealedVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "omniflow_encryption_sealed_key_version", Help: "The key version every record was brought to by the last complete pass (0: none yet).",
		}),
	}
	reg.MustRegister(m.pending, m.resealed, m.errors, m.activeVersion, m.sealedVersion)
	return m
}

func (m *Metrics) observe(s store.EncryptionState, err error) {
	if err != nil {
		m.errors.Inc()
	}
	pending := 0.0
	if s.Encrypts && !s.FullyEncrypted() {
		pending = 1
	}
	m.pending.Set(pending)
	m.activeVersion.Set(float64(s.ActiveVersion))
	m.sealedVersion.Set(float64(s.SealedVersion))
}
