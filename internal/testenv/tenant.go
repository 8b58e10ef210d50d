package testenv

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/omniflowcrm/omniflow-operator/controllers"
)

// MarkWorkerUp does what envtest lacks, a volume binder and the deployment
// controller with a kubelet: the tenant's data claim in ns is Bound (unless
// it already is) and its worker Deployment available.
func MarkWorkerUp(ctx context.Context, c client.Client, ns string) error {
	var pvc corev1.PersistentVolumeClaim
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.DataClaimName}, &pvc); err != nil {
		return fmt.Errorf("get data claim: %w", err)
	}
	if pvc.Status.Phase != corev1.ClaimBound {
		pvc.Status.Phase = corev1.ClaimBound
		if err := c.Status().Update(ctx, &pvc); err != nil {
			return fmt.Errorf("bind data claim: %w", err)
		}
	}
	if err := MarkAvailable(ctx, c, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}); err != nil {
		return fmt.Errorf("make worker available: %w", err)
	}
	return nil
}

// MarkAvailable reports a Deployment's every replica updated, ready and available, as
// the deployment controller would once the kubelet runs its pods (envtest runs neither).
func MarkAvailable(ctx context.Context, c client.Client, key types.NamespacedName) error {
	var dep appsv1.Deployment
	if err := c.Get(ctx, key, &dep); err != nil {
		return fmt.Errorf("get deployment %s: %w", key, err)
	}
	n := ptr.Deref(dep.Spec.Replicas, 1)
	dep.Status = appsv1.DeploymentStatus{
		ObservedGeneration: dep.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
	}
	if err := c.Status().Update(ctx, &dep); err != nil {
		return fmt.Errorf("update status of deployment %s: %w", key, err)
	}
	return nil
}
