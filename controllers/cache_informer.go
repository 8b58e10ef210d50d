package controllers

import (
	"maps"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
)

// newCacheInformer makes the cache's informers as controller-runtime does,
// except that the kinds the cache only ever serves by key (readByKeyOnly)
// are not indexed by namespace. controller-runtime indexes every informer
// by namespace, for a List in one namespace; the index keeps, for every
// namespace, a set of the keys of the objects in it: a map of about 200
// bytes per tenant per kind, 12% of the live heap at 3,000 tenants
// (docs/operator-scale.md). A List in one namespace of such a kind from the
// cache fails ("index with name namespace does not exist"): list it around
// the cache (APIReader), or take it out of readByKeyOnly.
func newCacheInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	if readByKeyOnly(obj) {
		indexers = maps.Clone(indexers)
		delete(indexers, toolscache.NamespaceIndex)
	}
	return toolscache.NewSharedIndexInformer(lw, obj, resync, indexers)
}

// readByKeyOnly: the kinds the operator applies (digestedKinds) and the
// tenants' Secrets (metadata only) are read from the cache by key, a Get
// or a watch mapping an object to its owner; the Secrets of a namespace
// are listed around the cache. Tenants, MetaChannels and DeletionRequests
// are listed by namespace from the cache and keep the index.
func readByKeyOnly(obj runtime.Object) bool {
	if _, ok := digestedKinds[reflect.TypeOf(obj)]; ok {
		return true
	}
	_, partial := obj.(*metav1.PartialObjectMetadata)
	return partial && obj.GetObjectKind().GroupVersionKind() == corev1.SchemeGroupVersion.WithKind("Secret")
}
