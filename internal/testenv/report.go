package testenv

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

// ReportMedia writes a shared-files report into the report ConfigMap of ns as the
// worker does: one merge patch of the key media, no read first. With the worker's
// client it runs under the worker's Role and the admission policy.
func ReportMedia(ctx context.Context, c client.Client, ns string, rep workerreport.Media) error {
	doc, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("encode media report: %w", err)
	}
	patch, err := json.Marshal(map[string]any{"data": map[string]string{platformv1.WorkerReportMediaKey: string(doc)}})
	if err != nil {
		return fmt.Errorf("encode media report: %w", err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: platformv1.WorkerReportName}}
	if err := c.Patch(ctx, cm, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("patch configmap %s/%s: %w", ns, platformv1.WorkerReportName, err)
	}
	return nil
}
