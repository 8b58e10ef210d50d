package controllers

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// lastAppliedAnnotation is kubectl's copy of a whole object in an
// annotation: often the largest field of an object applied by hand, and
// never read by the operator.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// CacheTransform trims every object before it enters the manager's cache,
// keeping only what the operator reads. managedFields go, except the
// operator's own server-side-apply entries: applyIfChanged needs the fields
// it owns to skip an apply that would change nothing (the zero-writes rule);
// other managers' entries (kube-controller-manager's status updates,
// kubectl's, GitOps tools') and kubectl's last-applied annotation are never
// read. For the kinds the operator applies (digestedKinds) the apply entry
// is then replaced by a digest of the fields it owns, and what no reader
// needs besides (a Service's spec, a Deployment's) is dropped. What remains
// shares one copy of each repeated string with the other cached objects
// (interner). An object of another type is left alone.
func CacheTransform(obj any) (any, error) {
	o, ok := obj.(metav1.Object)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown tombstone, for instance
	}
	if a := o.GetAnnotations(); a != nil {
		if _, has := a[lastAppliedAnnotation]; has {
			delete(a, lastAppliedAnnotation)
			o.SetAnnotations(a)
		}
	}
	// Set only when something goes: an object passed a second time (client-go
	// may transform an object again) must not be written while the cache's
	// readers read it.
	if mf, keep := o.GetManagedFields(), ownApplyEntries(o.GetManagedFields()); len(keep) != len(mf) {
		o.SetManagedFields(keep)
	}
	if co, ok := obj.(client.Object); ok {
		digestObject(co)
	}
	cacheInterner.object(obj)
	return obj, nil
}

// ownApplyEntries are the operator's apply entries of mf, nil if none.
func ownApplyEntries(mf []metav1.ManagedFieldsEntry) []metav1.ManagedFieldsEntry {
	var keep []metav1.ManagedFieldsEntry
	for _, e := range mf {
		// The digest entry digestObject leaves is one too: an object passed
		// twice keeps it.
		if e.Manager == fieldOwner && e.Operation == metav1.ManagedFieldsOperationApply && e.Subresource == "" {
			keep = append(keep, e)
		}
	}
	return keep
}

var _ cache.TransformFunc = CacheTransform
