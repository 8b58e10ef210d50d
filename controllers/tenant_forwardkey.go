package controllers

import (
	"bytes"
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/forward"
)

// reconcileForwardKey writes the tenant's derived forwarding key into
// ForwardKeySecret while the tenant has a channel with appRef, and removes
// it once none is left. Secrets are read uncached (the cache holds none of
// these); the value is never logged.
func (r *TenantReconciler) reconcileForwardKey(ctx context.Context, t *platformv1.Tenant, want bool) error {
	key := types.NamespacedName{Namespace: t.NamespaceName(), Name: ForwardKeySecret}
	var live corev1.Secret
	err := r.APIReader.Get(ctx, key, &live)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get forward key secret: %w", err)
	}
	exists := err == nil
	if !want {
		if exists && tenantOwns(&live, tenantRef{Name: t.Name, UID: t.UID}) {
			if err := r.Delete(ctx, &live); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("delete forward key secret: %w", err)
			}
		}
		return nil
	}
	if err := EnsureForwardingKey(ctx, r.Client, r.APIReader, r.Namespace); err != nil {
		return err
	}
	master, err := ReadForwardingKey(ctx, r.APIReader, r.Namespace)
	if err != nil {
		return err
	}
	desired := desiredForwardKeySecret(t, forward.TenantKey(master, t.Name))
	if exists && bytes.Equal(live.Data[ForwardingKeyKey], desired.Data[ForwardingKeyKey]) && tenantOwns(&live, tenantRef{Name: t.Name, UID: t.UID}) {
		return nil
	}
	if err := r.Apply(ctx, desired, client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply forward key secret: %w", err)
	}
	return nil
}
