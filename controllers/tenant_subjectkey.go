package controllers

import (
	"context"
	"crypto/rand"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// subjectKeyBytes is the size of the tenant's subject key: the same person
// gets the same reference within a tenant, and the reference cannot be
// reversed or matched across tenants without the key.
const subjectKeyBytes = 32

// reconcileSubjectKey creates the tenant's subject key once. It is never
// rotated: a new key would give the same person a new reference and break
// the audit trail's matching of repeated requests.
func (r *TenantReconciler) reconcileSubjectKey(ctx context.Context, t *platformv1.Tenant) (*ctrl.Result, error) {
	key := types.NamespacedName{Namespace: t.NamespaceName(), Name: platformv1.SubjectKeySecretName}
	// Metadata only: the value never needs to sit in the operator's cache.
	var existing metav1.PartialObjectMetadata
	existing.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	switch err := r.Get(ctx, key, &existing); {
	case err == nil:
		return nil, nil
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("get subject key: %w", err)
	}
	value := make([]byte, subjectKeyBytes)
	if _, err := rand.Read(value); err != nil {
		return nil, fmt.Errorf("generate subject key: %w", err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: key.Name, Namespace: key.Namespace, Labels: tenantLabels(t),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: platformv1.GroupVersion.String(), Kind: "Tenant", Name: t.Name, UID: t.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Type:      corev1.SecretTypeOpaque,
		Immutable: ptr.To(true),
		Data:      map[string][]byte{platformv1.SubjectKeySecretKey: value},
	}
	// The cache can lag behind: an existing key is kept, never replaced.
	if err := r.Create(ctx, secret, client.FieldOwner(fieldOwner)); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create subject key: %w", err)
	} else if err == nil {
		logCreated(ctx, "Secret", secret)
	}
	return nil, nil
}

// workerSecretNames are the Secrets the worker may read: its channels',
// the subject key, and the subjects of the given open requests, which the
// caller has checked against the subject Secret rule (grantedSubjects).
func workerSecretNames(channels []platformv1.MetaChannel, requests []platformv1.DeletionRequest) []string {
	names := append(channelSecretNames(channels), platformv1.SubjectKeySecretName)
	for i := range requests {
		if !requests[i].Finished() {
			names = append(names, requests[i].Spec.SubjectSecretRef.Name)
		}
	}
	return uniqueSorted(names)
}
