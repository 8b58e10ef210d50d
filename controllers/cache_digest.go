package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1ac "sigs.k8s.io/gateway-api/applyconfiguration/apis/v1"
)

// The cache keeps, for every kind the operator applies, a digest of the
// fields the operator owns on the live object instead of its field set; for
// the kinds whose spec nothing else reads, it drops the spec too. applyIfChanged compares
// that digest with the desired object's (docs/operator-scale.md: at 10,000
// tenants the owned field sets and the specs were most of the cache).
//
// The digest is taken in the cache's transform, from the full object the API
// server sent, the same way applyIfChanged used to compare: the fields the
// operator's apply entry owns, extracted from the live object
// (ExtractDeployment and the like), against the desired apply configuration.
// A hand edit of an owned field moves that field to another manager or
// changes its value, so the extracted fields, hence the digest, no longer
// match the desired object and the next pass applies again: the edit is put
// right, as before. Nothing is written to the cluster for it.

// digestFieldsType marks the managedFields entry the transform leaves in
// place of the operator's apply entry: its FieldsV1 holds the digest (a JSON
// string), not a field set. Anything that tries to read it as a field set
// fails (the field manager accepts only FieldsV1), which makes
// applyIfChanged apply rather than wrongly skip.
const digestFieldsType = "omniflow.digest.sha256"

// digestedKind is how the transform digests one kind.
type digestedKind struct {
	// extract is the operator's applied configuration of the live object.
	extract func(client.Object) (any, error)
	// trim drops what no reader of the cached object needs, once the digest
	// holds the applied fields; nil keeps the object as it is.
	trim func(client.Object)
}

// digested registers a kind: its Extract function and what of it is dropped.
func digested[T client.Object, AC any](extract func(T, string) (AC, error), trim func(T)) digestedKind {
	d := digestedKind{extract: func(o client.Object) (any, error) { return extract(o.(T), fieldOwner) }}
	if trim != nil {
		d.trim = func(o client.Object) { trim(o.(T)) }
	}
	return d
}

// digestedKinds are the kinds the operator applies with applyIfChanged, each
// with what its readers need besides the digest (their metadata stays whole:
// labels, annotations, owner references, generation, deletion timestamp):
//
//   - Deployment: status (WorkerReady, the front door's readiness);
//   - PersistentVolumeClaim: spec.volumeName and status (StorageReady, the volume's record);
//   - ConfigMap: data (the worker's report);
//   - Namespace: everything (the operator's marks are annotations; erasure reads its status);
//   - HTTPRoute: status (the Gateway's verdict);
//   - ServiceAccount, Role, RoleBinding, NetworkPolicy, Service, Ingress,
//     PodDisruptionBudget, ClusterRole, ClusterRoleBinding: nothing.
//
// The rule for a kind a controller starts to apply with applyIfChanged:
// register it here, with a trim that keeps every field some reader of the
// cache reads (never update such an object read from the cache: it lacks
// what the trim dropped; apply or merge-patch it). A kind not registered is
// cached whole and still compared correctly (applyIfChanged extracts from
// it), only at the cost of its memory.
var digestedKinds = map[reflect.Type]digestedKind{
	reflect.TypeFor[*appsv1.Deployment](): digested(appsv1ac.ExtractDeployment, func(o *appsv1.Deployment) {
		o.Spec = appsv1.DeploymentSpec{}
	}),
	reflect.TypeFor[*corev1.PersistentVolumeClaim](): digested(corev1ac.ExtractPersistentVolumeClaim, func(o *corev1.PersistentVolumeClaim) {
		o.Spec = corev1.PersistentVolumeClaimSpec{VolumeName: o.Spec.VolumeName}
	}),
	reflect.TypeFor[*corev1.ConfigMap](): digested(corev1ac.ExtractConfigMap, nil),
	reflect.TypeFor[*corev1.Namespace](): digested(corev1ac.ExtractNamespace, nil),
	reflect.TypeFor[*gatewayv1.HTTPRoute](): digested(gatewayv1ac.ExtractHTTPRoute, func(o *gatewayv1.HTTPRoute) {
		o.Spec = gatewayv1.HTTPRouteSpec{}
	}),
	reflect.TypeFor[*corev1.ServiceAccount](): digested(corev1ac.ExtractServiceAccount, func(o *corev1.ServiceAccount) {
		o.Secrets, o.ImagePullSecrets, o.AutomountServiceAccountToken = nil, nil, nil
	}),
	reflect.TypeFor[*rbacv1.Role](): digested(rbacv1ac.ExtractRole, func(o *rbacv1.Role) {
		o.Rules = nil
	}),
	reflect.TypeFor[*rbacv1.RoleBinding](): digested(rbacv1ac.ExtractRoleBinding, func(o *rbacv1.RoleBinding) {
		o.Subjects, o.RoleRef = nil, rbacv1.RoleRef{}
	}),
	reflect.TypeFor[*rbacv1.ClusterRole](): digested(rbacv1ac.ExtractClusterRole, func(o *rbacv1.ClusterRole) {
		o.Rules, o.AggregationRule = nil, nil
	}),
	reflect.TypeFor[*rbacv1.ClusterRoleBinding](): digested(rbacv1ac.ExtractClusterRoleBinding, func(o *rbacv1.ClusterRoleBinding) {
		o.Subjects, o.RoleRef = nil, rbacv1.RoleRef{}
	}),
	reflect.TypeFor[*networkingv1.NetworkPolicy](): digested(networkingv1ac.ExtractNetworkPolicy, func(o *networkingv1.NetworkPolicy) {
		o.Spec = networkingv1.NetworkPolicySpec{}
	}),
	reflect.TypeFor[*corev1.Service](): digested(corev1ac.ExtractService, func(o *corev1.Service) {
		o.Spec, o.Status = corev1.ServiceSpec{}, corev1.ServiceStatus{}
	}),
	reflect.TypeFor[*networkingv1.Ingress](): digested(networkingv1ac.ExtractIngress, func(o *networkingv1.Ingress) {
		o.Spec, o.Status = networkingv1.IngressSpec{}, networkingv1.IngressStatus{}
	}),
	reflect.TypeFor[*policyv1.PodDisruptionBudget](): digested(policyv1ac.ExtractPodDisruptionBudget, func(o *policyv1.PodDisruptionBudget) {
		o.Spec, o.Status = policyv1.PodDisruptionBudgetSpec{}, policyv1.PodDisruptionBudgetStatus{}
	}),
}

// warmDigests builds the apply configurations' schema parsers before the
// cache starts. They are built on first use, which takes a while (hundreds
// of milliseconds, seconds on a busy machine): on first use in the
// transform, it would hold up the first objects of every informer, and a
// pass that reads the cache meanwhile (a DeletionRequest looking up its
// namespace) would find it not yet there.
var warmDigests = sync.OnceFunc(func() {
	for t, kind := range digestedKinds {
		_, _ = kind.extract(reflect.New(t.Elem()).Interface().(client.Object))
	}
})

// appliedDigest is the digest of an apply configuration: the first 128 bits
// of the SHA-256 of its JSON (encoding/json sorts map keys; quantities are
// written in their canonical form, so "0.5" and "500m" digest alike, as
// equality.Semantic found them equal). The configurations are built with omitempty fields throughout, so a
// nil and an empty list or map read alike here too.
func appliedDigest(ac any) (string, error) {
	b, err := json.Marshal(ac)
	if err != nil {
		return "", fmt.Errorf("digest applied configuration: %w", err)
	}
	sum := sha256.Sum256(b)
	// 128 bits are plenty (a hand edit would have to hit the desired
	// object's digest by chance) and halve what each cached object keeps.
	return hex.EncodeToString(sum[:16]), nil
}

// digestObject replaces o's operator apply entry by a digest entry and trims
// what no reader needs, if o's kind is registered. An object whose fields
// cannot be extracted is left whole: applyIfChanged then extracts (and fails,
// and applies) as for a kind not registered. An object already digested is
// left as it is.
func digestObject(o client.Object) {
	kind, ok := digestedKinds[reflect.TypeOf(o)]
	if !ok {
		return
	}
	if _, done := cachedDigest(o); done {
		return
	}
	applied, err := kind.extract(o)
	if err != nil {
		return
	}
	d, err := appliedDigest(applied)
	if err != nil {
		return
	}
	o.SetManagedFields([]metav1.ManagedFieldsEntry{{
		Manager:    fieldOwner,
		Operation:  metav1.ManagedFieldsOperationApply,
		FieldsType: digestFieldsType,
		FieldsV1:   metav1.NewFieldsV1(`"` + d + `"`),
	}})
	if kind.trim != nil {
		kind.trim(o)
	}
}

// cachedDigest is the digest the cache's transform left on o, if any.
func cachedDigest(o metav1.Object) (string, bool) {
	for _, e := range o.GetManagedFields() {
		if e.FieldsType == digestFieldsType && e.Manager == fieldOwner && e.FieldsV1 != nil {
			var d string
			if err := json.Unmarshal(e.FieldsV1.GetRawBytes(), &d); err != nil {
				return "", false
			}
			return d, true
		}
	}
	return "", false
}
