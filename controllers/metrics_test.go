package controllers_test

import (
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/omniflowcrm/omniflow-operator/controllers"
)

// reconcileCount reads controller-runtime's reconcile counter of the tenant
// controller from the shared metrics registry.
func reconcileCount(g Gomega) float64 {
	mfs, err := metrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "tenant" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// maxConcurrent reads how many reconciles each controller runs at once.
func maxConcurrent(g Gomega) map[string]float64 {
	mfs, err := metrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "controller_runtime_max_concurrent_reconciles" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// The suite runs the operator as cmd/manager does by default: Tenants and
// DeletionRequests several at a time, so every test here also runs under
// concurrent reconciles; MetaChannels one at a time (the id-claim rule).
func TestTenantsReconcileConcurrentlyAndChannelsOneAtATime(t *testing.T) {
	g := NewWithT(t)
	g.Expect(maxConcurrent(g)).To(And(
		HaveKeyWithValue("tenant", float64(controllers.DefaultMaxConcurrentReconciles)),
		HaveKeyWithValue("deletionrequest", float64(controllers.DefaultMaxConcurrentReconciles)),
		HaveKeyWithValue("metachannel", 1.0),
	))
	g.Expect(controllers.DefaultMaxConcurrentReconciles).To(BeNumerically(">", 1))
}
