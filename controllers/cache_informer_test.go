package controllers

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// The cache indexes by namespace only the kinds listed by namespace: the
// kinds the operator applies and the tenants' Secrets are read by key, and
// their namespace index was a map per tenant per kind
// (docs/operator-scale.md).
func TestTheCacheIndexesByNamespaceOnlyWhatIsListedByNamespace(t *testing.T) {
	t.Parallel()
	opts := CacheOptions(RouteConfig{})
	if opts.NewInformer == nil {
		t.Fatal("CacheOptions makes its informers with controller-runtime's default: every kind indexed by namespace")
	}
	for _, tc := range []struct {
		obj     runtime.Object
		indexed bool
	}{
		{&appsv1.Deployment{}, false},
		{&corev1.Service{}, false},
		{&corev1.PersistentVolumeClaim{}, false},
		{&corev1.ConfigMap{}, false},
		{&platformv1.MetaChannel{}, true},
		{&platformv1.DeletionRequest{}, true},
		{&platformv1.Tenant{}, true},
		{&metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}}, false},
		{&metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}}, true},
	} {
		// controller-runtime asks for the namespace index, and a field index
		// added later (IndexField) must still be accepted.
		inf := opts.NewInformer(&toolscache.ListWatch{}, tc.obj, 0, toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
		if err := inf.AddIndexers(toolscache.Indexers{"field:example": func(any) ([]string, error) { return nil, nil }}); err != nil {
			t.Fatalf("%T: add a field index: %v", tc.obj, err)
		}
		indexers := inf.GetIndexer().GetIndexers()
		if _, has := indexers[toolscache.NamespaceIndex]; has != tc.indexed {
			t.Errorf("%T indexed by namespace: %v, want %v", tc.obj, has, tc.indexed)
		}
		if _, has := indexers["field:example"]; !has {
			t.Errorf("%T lost its field index", tc.obj)
		}
	}
}
