package testenv

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// MetricValue reads a gauge or counter from the operator's metrics registry:
// the first series of name whose label has value (any series when label is
// empty). found is false when there is no such series.
func MetricValue(name, label, value string) (v float64, found bool, err error) {
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		return 0, false, fmt.Errorf("gather metrics: %w", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || (l.GetName() == label && l.GetValue() == value)
			}
			if !match {
				continue
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true, nil
			}
			return m.GetCounter().GetValue(), true, nil
		}
	}
	return 0, false, nil
}

// BlockNamespaceDeletion puts a ConfigMap with a finalizer in ns, so that a
// deleted ns stays Terminating (and an erasure waits) until release is
// called.
func BlockNamespaceDeletion(ctx context.Context, c client.Client, ns string) (release func() error, err error) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: "blocker", Namespace: ns, Finalizers: []string{"example.test/hold"},
	}}
	if err := c.Create(ctx, cm); err != nil {
		return nil, fmt.Errorf("create blocker: %w", err)
	}
	return func() error {
		var cur corev1.ConfigMap
		if err := c.Get(ctx, client.ObjectKeyFromObject(cm), &cur); err != nil {
			return fmt.Errorf("get blocker: %w", err)
		}
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Finalizers = nil
		return c.Patch(ctx, &cur, patch)
	}, nil
}
