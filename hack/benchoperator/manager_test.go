package main

import "testing"

func TestSumMetricAddsOnlyTheNamedSamplesThatMatch(t *testing.T) {
	t.Parallel()
	text := `# HELP workqueue_depth Current depth of workqueue
workqueue_depth{controller="tenant",name="tenant"} 3
workqueue_depth{controller="metachannel",name="metachannel"} 2
workqueue_depth_total 100
controller_runtime_reconcile_total{controller="tenant",result="success"} 1000
controller_runtime_reconcile_total{controller="tenant",result="requeue_after"} 5
controller_runtime_reconcile_total{controller="metachannel",result="success"} 7
go_memstats_heap_inuse_bytes 1.2e+08
`
	for _, tc := range []struct {
		name, metric, filter string
		want                 float64
	}{
		{"every sample of a name, not of a longer name", "workqueue_depth", "", 5},
		{"filtered by label", "controller_runtime_reconcile_total", `controller="tenant"`, 1005},
		{"without labels", "go_memstats_heap_inuse_bytes", "", 1.2e8},
		{"absent", "nothing_here", "", 0},
	} {
		if got := sumMetric(text, tc.metric, tc.filter); got != tc.want {
			t.Errorf("%s: sumMetric(%s, %q) = %v, want %v", tc.name, tc.metric, tc.filter, got, tc.want)
		}
	}
}
