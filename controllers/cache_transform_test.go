package controllers

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func TestCacheTransformKeepsOnlyWhatTheOperatorReads(t *testing.T) {
	t.Parallel()
	own := metav1.ManagedFieldsEntry{Manager: fieldOwner, Operation: metav1.ManagedFieldsOperationApply, FieldsV1: metav1.NewFieldsV1(`{"f:spec":{}}`)}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{
		Name: "worker",
		Annotations: map[string]string{
			lastAppliedAnnotation:   `{"a":"large copy"}`,
			AnnotationTenantUID:     "uid-1",
			"example.com/unrelated": "kept",
		},
		ManagedFields: []metav1.ManagedFieldsEntry{
			own,
			{Manager: fieldOwner, Operation: metav1.ManagedFieldsOperationUpdate}, // a Create's entry: never extracted
			{Manager: fieldOwner, Operation: metav1.ManagedFieldsOperationApply, Subresource: "status"},
			{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, Subresource: "status"},
			{Manager: "kubectl-client-side-apply", Operation: metav1.ManagedFieldsOperationUpdate},
		},
	}}
	out, err := CacheTransform(dep)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*appsv1.Deployment)
	if len(got.ManagedFields) != 1 || got.ManagedFields[0].Manager != fieldOwner || got.ManagedFields[0].FieldsV1.GetRawString() != `{"f:spec":{}}` {
		t.Errorf("managedFields = %+v, want only the operator's apply entry", got.ManagedFields)
	}
	if _, has := got.Annotations[lastAppliedAnnotation]; has {
		t.Errorf("last-applied annotation kept")
	}
	if got.Annotations[AnnotationTenantUID] != "uid-1" || got.Annotations["example.com/unrelated"] != "kept" {
		t.Errorf("annotations = %v, want the others kept", got.Annotations)
	}

	// A tombstone passes through untouched.
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/worker"}
	if out, err := CacheTransform(tomb); err != nil || out != tomb {
		t.Errorf("CacheTransform(tombstone) = %v, %v", out, err)
	}
}
