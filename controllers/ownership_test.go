package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

func markedNamespace(name, tenant, uid string, extra map[string]string) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{platformv1.LabelTenant: tenant}}}
	if uid != "" {
		ns.Annotations = map[string]string{AnnotationTenantUID: uid}
	}
	for k, v := range extra {
		if ns.Annotations == nil {
			ns.Annotations = map[string]string{}
		}
		ns.Annotations[k] = v
	}
	return ns
}

func TestTenantOwnsNeedsTheUIDBoundMark(t *testing.T) {
	ref := tenantRef{Name: "acme", UID: "uid-1", Namespace: "tenant-acme"}
	owned := func(uid string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{
			Name: WorkerName, Namespace: "tenant-acme",
			Labels: map[string]string{platformv1.LabelTenant: "acme", platformv1.LabelManagedBy: platformv1.ManagedByValue},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: platformv1.GroupVersion.String(), Kind: "Tenant", Name: "acme",
				UID: ktypes.UID("uid-" + uid), Controller: ptr.To(true)}},
		}}
	}
	labelsOnly := owned("1")
	labelsOnly.OwnerReferences = nil
	marked := owned("1")
	marked.OwnerReferences = nil
	marked.Annotations = map[string]string{AnnotationTenantUID: "uid-1"}
	for _, tc := range []struct {
		name string
		obj  client.Object
		want bool
	}{
		{"namespace with label and this Tenant's mark", markedNamespace("tenant-acme", "acme", "uid-1", nil), true},
		{"namespace with the label only", markedNamespace("tenant-acme", "acme", "", nil), false},
		{"namespace marked for an earlier Tenant of the name", markedNamespace("tenant-acme", "acme", "uid-0", nil), false},
		{"namespace marked, labelled for another tenant", markedNamespace("tenant-acme", "other", "uid-1", nil), false},
		{"namespaced object controlled by this Tenant", owned("1"), true},
		{"namespaced object controlled by an earlier Tenant", owned("0"), false},
		{"namespaced object with our labels only", labelsOnly, false},
		{"namespaced object with a forged mark and no owner", marked, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tenantOwns(tc.obj, ref); got != tc.want {
				t.Fatalf("tenantOwns = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSweepOwnerOfANamespace(t *testing.T) {
	live := func(name, uid, ns string) platformv1.Tenant {
		tn := platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: name, UID: ktypes.UID("uid-" + uid)}}
		tn.Spec.Namespace = ns
		return tn
	}
	for _, tc := range []struct {
		name    string
		ns      *corev1.Namespace
		tenants []platformv1.Tenant
		want    owner
	}{
		{"label only, no Tenant: not ours, never touched", markedNamespace("tenant-a", "a", "", nil), nil, ownerNone},
		{"label only, Tenant exists: not ours yet", markedNamespace("tenant-a", "a", "", nil), []platformv1.Tenant{live("a", "1", "")}, ownerNone},
		{"marked, its Tenant lives there", markedNamespace("tenant-a", "a", "uid-1", nil), []platformv1.Tenant{live("a", "1", "")}, ownerLive},
		{"marked, Tenant force-removed", markedNamespace("tenant-a", "a", "uid-1", nil), nil, ownerGone},
		{"marked, re-created under the same namespace: taken over", markedNamespace("tenant-a", "a", "uid-1", nil), []platformv1.Tenant{live("a", "2", "")}, ownerLive},
		{"marked, re-created under another namespace: orphan", markedNamespace("tenant-a", "a", "uid-1", nil), []platformv1.Tenant{live("a", "2", "elsewhere")}, ownerGone},
		{"marked, another tenant alive", markedNamespace("tenant-a", "a", "uid-1", nil), []platformv1.Tenant{live("b", "1x", "")}, ownerGone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := ownerOf(tc.ns, tc.ns.Name, tc.tenants); got != tc.want {
				t.Fatalf("ownerOf = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOrphanTargetComesFromTheMarksAlone(t *testing.T) {
	pg := markedNamespace("tenant-a", "a", "uid-1", map[string]string{
		AnnotationNamespaceOrigin: OriginCreated, AnnotationStorageBackend: "PostgreSQL", AnnotationPostgresDatabase: "omniflow_a",
	})
	tgt, err := targetFromNamespace(pg)
	if err != nil {
		t.Fatal(err)
	}
	if tgt.Backend != platformv1.StoragePostgreSQL || tgt.Database != "omniflow_a" || tgt.UID != "uid-1" || tgt.Namespace != "tenant-a" {
		t.Fatalf("target = %+v", tgt)
	}
	for name, ns := range map[string]*corev1.Namespace{
		"no backend mark":  markedNamespace("tenant-a", "a", "uid-1", nil),
		"no database mark": markedNamespace("tenant-a", "a", "uid-1", map[string]string{AnnotationStorageBackend: "PostgreSQL"}),
		"unknown backend":  markedNamespace("tenant-a", "a", "uid-1", map[string]string{AnnotationStorageBackend: "Cassandra"}),
	} {
		if _, err := targetFromNamespace(ns); err == nil {
			t.Errorf("%s: a target was guessed", name)
		}
	}
}
