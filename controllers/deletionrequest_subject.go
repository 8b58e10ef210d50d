package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// A DeletionRequest names its subject by a Secret. That Secret is read by the
// worker and deleted by the operator once the request is finished, so a request
// must never be a way to read or delete any other Secret. The rule: a subject
// Secret has the type platform.omniflowcrm.com/subject (immutable once created,
// so no existing TLS or Opaque Secret can become one), belongs to no other
// DeletionRequest, and is used by nothing of the platform.

// subjectSecret is what the operator knows of the Secret a request names.
type subjectSecret struct {
	Type   corev1.SecretType
	Owners []metav1.OwnerReference
	// KeyMissing: the key the request names is absent or empty (unknown,
	// false, where only metadata was read).
	KeyMissing bool
}

// platformSecretUses names, for every Secret of a tenant namespace that the
// platform uses, what uses it. Whatever its type, such a Secret is never a
// subject Secret.
func platformSecretUses(channels []platformv1.MetaChannel, route RouteConfig) map[string]string {
	uses := map[string]string{
		platformv1.SubjectKeySecretName: "the tenant's subject key",
		platformv1.PostgresSecretName:   "the tenant's PostgreSQL credentials",
		ForwardKeySecret:                "the tenant's forwarding key",
	}
	if route.kind() == RouteIngress && route.IngressTLSSecret != "" {
		uses[route.IngressTLSSecret] = "the tenant Ingress's TLS certificate"
	}
	for i := range channels {
		for _, ref := range channelSecretRefs(&channels[i]) {
			if name := ref.Ref.Name; uses[name] == "" && name != "" {
				uses[name] = "the credentials of MetaChannel " + channels[i].Name
			}
		}
	}
	return uses
}

// subjectRefusal says why the Secret a request names may not serve as its
// subject (read by the worker, deleted by the operator), or returns "" when it
// may. s is nil when the Secret does not exist. The message names the Secret
// and its type, never its content.
func subjectRefusal(dr *platformv1.DeletionRequest, s *subjectSecret, uses map[string]string) (reason, msg string) {
	name := dr.Spec.SubjectSecretRef.Name
	if use, ok := uses[name]; ok {
		return platformv1.ReasonSubjectSecretInUse, fmt.Sprintf("refused: subjectSecretRef names the Secret %s, which is %s; "+
			"put the identifier in a Secret of its own of type %s", name, use, platformv1.SubjectSecretType)
	}
	if s == nil {
		return platformv1.ReasonSubjectSecretMissing, fmt.Sprintf("the subject Secret %s does not exist", name)
	}
	if s.Type != platformv1.SubjectSecretType {
		return platformv1.ReasonNotASubjectSecret, fmt.Sprintf("refused: the Secret %s has type %s; a subject Secret must have type %s "+
			"(a Secret's type cannot change: create a new one)", name, s.Type, platformv1.SubjectSecretType)
	}
	for _, o := range s.Owners {
		if o.Kind == "DeletionRequest" && o.APIVersion == platformv1.GroupVersion.String() && o.UID != dr.UID {
			return platformv1.ReasonSubjectSecretInUse, fmt.Sprintf("refused: the Secret %s belongs to DeletionRequest %s", name, o.Name)
		}
	}
	if s.KeyMissing {
		return platformv1.ReasonSubjectSecretMissing, fmt.Sprintf("the subject Secret %s has no value under key %s", name, dr.Spec.SubjectSecretRef.Key)
	}
	return "", ""
}

// readSubjectSecret reads the Secret a request names, around the cache (which
// holds only the platform's labelled Secrets). It returns nil when there is none.
func readSubjectSecret(ctx context.Context, r client.Reader, dr *platformv1.DeletionRequest) (*subjectSecret, error) {
	var s corev1.Secret
	err := r.Get(ctx, types.NamespacedName{Namespace: dr.Namespace, Name: dr.Spec.SubjectSecretRef.Name}, &s)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get subject secret: %w", err)
	}
	_, inData := s.Data[dr.Spec.SubjectSecretRef.Key]
	_, inString := s.StringData[dr.Spec.SubjectSecretRef.Key]
	return &subjectSecret{Type: s.Type, Owners: s.OwnerReferences, KeyMissing: !inData && !inString}, nil
}

// grantedSubjects lists the subject Secrets the worker may read: those of the
// requests the operator accepted and that are still open, checked again here
// against the Secrets as they are (never against a request's status alone, which
// the worker may write). Only the metadata of Secrets of the subject type is read.
func grantedSubjects(ctx context.Context, r client.Reader, ns string, requests []platformv1.DeletionRequest, uses map[string]string) ([]platformv1.DeletionRequest, error) {
	var open []platformv1.DeletionRequest
	for i := range requests {
		if p := requests[i].Status.Phase; p == platformv1.DeletionPending || p == platformv1.DeletionRunning {
			open = append(open, requests[i])
		}
	}
	if len(open) == 0 {
		return nil, nil
	}
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := r.List(ctx, &list, client.InNamespace(ns),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("type", platformv1.SubjectSecretType)}); err != nil {
		return nil, fmt.Errorf("list subject secrets: %w", err)
	}
	subjects := make(map[string]*subjectSecret, len(list.Items))
	for i := range list.Items {
		subjects[list.Items[i].Name] = &subjectSecret{Type: platformv1.SubjectSecretType, Owners: list.Items[i].OwnerReferences}
	}
	var out []platformv1.DeletionRequest
	for i := range open {
		s := subjects[open[i].Spec.SubjectSecretRef.Name]
		if reason, _ := subjectRefusal(&open[i], s, uses); reason == "" {
			out = append(out, open[i])
		}
	}
	return out, nil
}
