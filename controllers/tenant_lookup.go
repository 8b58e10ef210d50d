package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// lookupTenant reads a namespace's tenant label and that Tenant. The cache
// holds only namespaces that carry the label, so an unlabelled namespace
// reads as not found, like a missing one.
func lookupTenant(ctx context.Context, c client.Reader, ns string) (channelTenant, error) {
	var nsObj corev1.Namespace
	if err := c.Get(ctx, types.NamespacedName{Name: ns}, &nsObj); err != nil {
		if apierrors.IsNotFound(err) {
			return channelTenant{}, nil
		}
		return channelTenant{}, fmt.Errorf("get namespace %s: %w", ns, err)
	}
	ct := channelTenant{NamespaceTenant: nsObj.Labels[platformv1.LabelTenant]}
	if ct.NamespaceTenant == "" {
		return ct, nil
	}
	var t platformv1.Tenant
	switch err := c.Get(ctx, types.NamespacedName{Name: ct.NamespaceTenant}, &t); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return channelTenant{}, fmt.Errorf("get tenant %s: %w", ct.NamespaceTenant, err)
	default:
		ct.Tenant = &t
	}
	return ct, nil
}

// servedBy says whether the namespace is the live namespace of its Tenant.
func (ct channelTenant) servedBy(ns string) bool {
	return ct.Tenant != nil && ct.Tenant.NamespaceName() == ns
}
