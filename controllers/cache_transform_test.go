package controllers

import (
	"reflect"
	"testing"
	"unsafe"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// A kind the operator does not apply (not in digestedKinds) keeps its
// operator apply entry as it is.
func TestCacheTransformKeepsOnlyWhatTheOperatorReads(t *testing.T) {
	t.Parallel()
	own := metav1.ManagedFieldsEntry{Manager: fieldOwner, Operation: metav1.ManagedFieldsOperationApply, FieldsV1: metav1.NewFieldsV1(`{"f:spec":{}}`)}
	dep := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{
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
	got := out.(*appsv1.StatefulSet)
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

// Two tenants' objects, decoded apart, share one copy of their repeated
// strings once cached: label keys and values, the namespace, owner references,
// managedFields' manager, the spec's image and its template's labels. Their
// values are unchanged, and what is unique to an object is not remembered.
// (A StatefulSet: a kind whose spec and field sets the cache keeps.)
func TestCacheTransformSharesRepeatedMetadata(t *testing.T) {
	t.Parallel()
	decoded := func(tenant string) *appsv1.StatefulSet {
		// Fresh strings and bytes, as a decoder makes them for every object.
		fresh := func(s string) string { return string([]byte(s)) }
		return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{
			Name: fresh("omniflow-worker"), Namespace: fresh("tenant-" + tenant),
			Labels: map[string]string{fresh("app.kubernetes.io/managed-by"): fresh("omniflow-operator"), fresh(platformv1.LabelTenant): fresh(tenant)},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: fresh("platform.omniflowcrm.com/v1alpha1"), Kind: fresh("Tenant"), Name: fresh(tenant), UID: "uid-" + types.UID(tenant),
			}},
			ManagedFields: []metav1.ManagedFieldsEntry{{
				Manager: fresh(fieldOwner), Operation: metav1.ManagedFieldsOperationApply, APIVersion: fresh("apps/v1"),
				FieldsType: fresh("FieldsV1"), FieldsV1: metav1.NewFieldsV1(fresh(`{"f:spec":{"f:replicas":{}}}`)),
			}},
			UID: "object-uid-" + types.UID(tenant), ResourceVersion: fresh("42"),
		}, Spec: appsv1.StatefulSetSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{fresh("app.kubernetes.io/name"): fresh("omniflow-worker")}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: fresh("worker"), Image: fresh("example.com/omniflow:v1")}}},
		}}}
	}
	var got []*appsv1.StatefulSet
	for _, tenant := range []string{"acme", "acme", "globex"} {
		out, err := CacheTransform(decoded(tenant))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, out.(*appsv1.StatefulSet))
	}
	same := func(a, b string) bool { return len(a) > 0 && unsafe.StringData(a) == unsafe.StringData(b) }
	a, a2, b := got[0], got[1], got[2]
	if a.Labels[platformv1.LabelTenant] != "acme" || b.Labels[platformv1.LabelTenant] != "globex" || a.Namespace != "tenant-acme" ||
		a.ManagedFields[0].FieldsV1.GetRawString() != `{"f:spec":{"f:replicas":{}}}` || a.OwnerReferences[0].Name != "acme" {
		t.Fatalf("values changed: %+v", a.ObjectMeta)
	}
	if a.Spec.Template.Spec.Containers[0].Image != "example.com/omniflow:v1" || !same(a.Spec.Template.Spec.Containers[0].Image, b.Spec.Template.Spec.Containers[0].Image) ||
		!same(a.Spec.Template.Labels["app.kubernetes.io/name"], b.Spec.Template.Labels["app.kubernetes.io/name"]) {
		t.Errorf("spec strings not shared")
	}
	cacheInterner.mu.Lock()
	_, remembered := cacheInterner.strs[string(a.UID)]
	cacheInterner.mu.Unlock()
	if remembered {
		t.Errorf("an object's own uid is remembered")
	}
	if !same(a.ManagedFields[0].Manager, b.ManagedFields[0].Manager) || !same(a.ManagedFields[0].APIVersion, b.ManagedFields[0].APIVersion) {
		t.Errorf("managedFields strings not shared")
	}
	if !same(a.Name, b.Name) || !same(a.Namespace, a2.Namespace) {
		t.Errorf("name or namespace not shared")
	}
	if !same(a.Labels["app.kubernetes.io/managed-by"], b.Labels["app.kubernetes.io/managed-by"]) ||
		!same(a.Labels[platformv1.LabelTenant], a2.Labels[platformv1.LabelTenant]) {
		t.Errorf("label values not shared")
	}
	for k := range a.Labels {
		for k2 := range b.Labels {
			if k == k2 && !same(k, k2) {
				t.Errorf("label key %q not shared", k)
			}
		}
	}
	if !same(a.OwnerReferences[0].Kind, b.OwnerReferences[0].Kind) || !same(a.OwnerReferences[0].Name, a2.OwnerReferences[0].Name) ||
		!same(string(a.OwnerReferences[0].UID), string(a2.OwnerReferences[0].UID)) {
		t.Errorf("owner references not shared")
	}
}

// A full interner starts over instead of growing without bound.
func TestInternerStaysBounded(t *testing.T) {
	t.Parallel()
	in := newInterner(2)
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		in.str(s)
	}
	if len(in.strs) > 2 {
		t.Errorf("interner holds %d strings, want at most 2", len(in.strs))
	}
	if got := in.str("e"); got != "e" {
		t.Errorf("str(e) = %q", got)
	}
}

// Objects with the same labels and the same owner references share one map
// and one list once cached; others keep their own, and their values.
func TestCacheTransformSharesLabelsAndOwners(t *testing.T) {
	t.Parallel()
	obj := func(name, tenant string, controller bool) *corev1.ServiceAccount {
		return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "tenant-" + tenant,
			Labels: map[string]string{platformv1.LabelTenant: tenant, "app.kubernetes.io/managed-by": "omniflow-operator"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "platform.omniflowcrm.com/v1alpha1", Kind: "Tenant", Name: tenant, UID: types.UID("uid-" + tenant), Controller: &controller,
			}},
		}}
	}
	var got []*corev1.ServiceAccount
	for _, o := range []*corev1.ServiceAccount{obj("a", "acme", true), obj("b", "acme", true), obj("c", "globex", true), obj("d", "acme", false)} {
		out, err := CacheTransform(o)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, out.(*corev1.ServiceAccount))
	}
	sameMap := func(a, b map[string]string) bool {
		return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
	}
	sameRefs := func(a, b []metav1.OwnerReference) bool { return &a[0] == &b[0] }
	a, b, c, d := got[0], got[1], got[2], got[3]
	if !sameMap(a.Labels, b.Labels) || !sameRefs(a.OwnerReferences, b.OwnerReferences) {
		t.Errorf("the same labels and owners are not shared")
	}
	if sameMap(a.Labels, c.Labels) || sameRefs(a.OwnerReferences, c.OwnerReferences) || sameRefs(a.OwnerReferences, d.OwnerReferences) {
		t.Errorf("different labels or owners shared")
	}
	if c.Labels[platformv1.LabelTenant] != "globex" || c.OwnerReferences[0].UID != "uid-globex" || *d.OwnerReferences[0].Controller {
		t.Errorf("values changed: %+v, %+v", c.ObjectMeta, d.ObjectMeta)
	}
}

// client-go may pass an object to the transform a second time (a relist hands
// the cached objects back), while the cache's readers read it. The second pass
// must only read: under -race, a write to any field, label map, owner reference
// or string of a cached object while an event handler reads it is a data race.
func TestCacheTransformOfATransformedObjectWritesNothing(t *testing.T) {
	t.Parallel()
	objs := []client.Object{
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ingest-worker", Namespace: "tenant-twice",
			Labels: map[string]string{platformv1.LabelTenant: "twice", platformv1.LabelManagedBy: platformv1.ManagedByValue},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "platform.omniflowcrm.com/v1alpha1", Kind: "Tenant", Name: "twice",
				UID: "uid-twice", Controller: ptr.To(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: fieldOwner, Operation: metav1.ManagedFieldsOperationApply, FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:ports":{}}}`)},
				{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate},
			}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: "tenant-twice",
			Labels:      map[string]string{platformv1.LabelTenant: "twice"},
			Annotations: map[string]string{"example.com/a": "b"}},
			Data: map[string]string{"k": "v", "": ""}},
	}
	for _, obj := range objs {
		if _, err := CacheTransform(obj); err != nil {
			t.Fatal(err)
		}
		before := obj.DeepCopyObject()
		labels, refs := obj.GetLabels(), obj.GetOwnerReferences()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 200 {
				_ = metav1.GetControllerOf(obj)
				for k, v := range obj.GetLabels() {
					_, _ = k, v
				}
				_ = obj.GetName() + obj.GetNamespace()
				_ = len(obj.GetManagedFields())
			}
		}()
		for range 20 {
			if _, err := CacheTransform(obj); err != nil {
				t.Fatal(err)
			}
		}
		<-done
		if !reflect.DeepEqual(before, obj) {
			t.Errorf("%T changed on a second pass", obj)
		}
		if reflect.ValueOf(obj.GetLabels()).UnsafePointer() != reflect.ValueOf(labels).UnsafePointer() {
			t.Errorf("%T's labels were replaced on a second pass", obj)
		}
		if len(refs) > 0 && &obj.GetOwnerReferences()[0] != &refs[0] {
			t.Errorf("%T's owner references were replaced on a second pass", obj)
		}
	}
}
