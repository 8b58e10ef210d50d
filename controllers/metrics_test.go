package controllers_test

import (
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
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
