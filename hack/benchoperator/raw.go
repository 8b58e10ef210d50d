package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// namespacedKinds are the kinds the operator provisions in a tenant
// namespace (with --route=ingress).
var namespacedKinds = []schema.GroupVersionKind{
	{Version: "v1", Kind: "Secret"},
	{Version: "v1", Kind: "PersistentVolumeClaim"},
	{Version: "v1", Kind: "ServiceAccount"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"},
	{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"},
	{Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "", Version: "v1", Kind: "Service"},
	{Version: "v1", Kind: "ConfigMap"},
	{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
}

// rawProvision is the baseline: a client that creates, one request after
// another, exactly the objects the operator made for the first tenant (a
// namespace and its content), for n tenants. It returns the time taken and
// the number of objects per tenant, the namespace included.
func rawProvision(ctx context.Context, c client.Client, n int) (time.Duration, int, error) {
	var t platformv1.Tenant
	if err := c.Get(ctx, client.ObjectKey{Name: tenantName(0)}, &t); err != nil {
		return 0, 0, fmt.Errorf("get tenant: %w", err)
	}
	var templates []*unstructured.Unstructured
	for _, gvk := range namespacedKinds {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := c.List(ctx, list, client.InNamespace(t.NamespaceName()),
			client.MatchingLabels{platformv1.LabelManagedBy: platformv1.ManagedByValue}); err != nil {
			return 0, 0, fmt.Errorf("list %s: %w", gvk.Kind, err)
		}
		for i := range list.Items {
			templates = append(templates, clean(&list.Items[i]))
		}
	}
	start := time.Now()
	for i := range n {
		ns := fmt.Sprintf("raw-%05d", i)
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return 0, 0, fmt.Errorf("create namespace %s: %w", ns, err)
		}
		for _, tpl := range templates {
			obj := tpl.DeepCopy()
			obj.SetNamespace(ns)
			if err := c.Create(ctx, obj); err != nil {
				return 0, 0, fmt.Errorf("create %s %s/%s: %w", obj.GetKind(), ns, obj.GetName(), err)
			}
		}
	}
	return time.Since(start), len(templates) + 1, nil
}

// clean drops what the server set on an object, so that it can be created
// again elsewhere.
func clean(u *unstructured.Unstructured) *unstructured.Unstructured {
	u = u.DeepCopy()
	for _, f := range []string{"uid", "resourceVersion", "creationTimestamp", "managedFields", "ownerReferences", "generation"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	unstructured.RemoveNestedField(u.Object, "status")
	if u.GetKind() == "Service" {
		// Allocated by the server, and unique.
		unstructured.RemoveNestedField(u.Object, "spec", "clusterIP")
		unstructured.RemoveNestedField(u.Object, "spec", "clusterIPs")
	}
	if u.GetKind() == "PersistentVolumeClaim" {
		unstructured.RemoveNestedField(u.Object, "spec", "volumeName")
	}
	return u
}
