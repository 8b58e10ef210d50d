package controllers

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

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
			if got := ownerOf(tc.ns, tc.ns.Name, liveOf(tc.tenants...)); got != tc.want {
				t.Fatalf("ownerOf = %v, want %v", got, tc.want)
			}
		})
	}
}

// liveOf is what a sweep that listed these Tenants knows of them.
func liveOf(tenants ...platformv1.Tenant) liveTenants {
	live := liveTenants{byUID: map[ktypes.UID]string{}, byName: map[string]namedTenant{}}
	for i := range tenants {
		live.add(&tenants[i])
	}
	return live
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

// Releasing an adopted namespace removes the marks that made it the
// tenant's. A repeated run of the step (its record was lost to a status
// conflict) must still report what was done, not "not the tenant's".
func TestReleasingAnAdoptedNamespaceReportsTheSameWhenRepeated(t *testing.T) {
	sch := runtime.NewScheme()
	if err := AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	ns := markedNamespace("team-a", "a", "uid-1", map[string]string{
		AnnotationNamespaceOrigin: OriginAdopted, AnnotationStorageBackend: "SQLite", "example.test/theirs": "kept",
	})
	c := fake.NewClientBuilder().WithScheme(sch).WithObjects(ns).Build()
	r := &TenantReconciler{Client: c, APIReader: c}
	tgt := &erasureTarget{tenantRef: tenantRef{Name: "a", UID: "uid-1", Namespace: "team-a"}, Backend: platformv1.StorageSQLite}
	ctx := context.Background()
	first, done, err := r.deleteNamespace(ctx, tgt)
	if err != nil || !done {
		t.Fatalf("deleteNamespace() = %q, %v, %v", first, done, err)
	}
	again, done, err := r.deleteNamespace(ctx, tgt)
	if err != nil || !done || again != first || !strings.Contains(again, "was adopted and is kept") {
		t.Fatalf("repeated deleteNamespace() = %q, %v, %v; first said %q", again, done, err, first)
	}
	var got corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: "team-a"}, &got); err != nil {
		t.Fatalf("the adopted namespace is gone: %v", err)
	}
	if tenantOwns(&got, tgt.tenantRef) || got.Annotations["example.test/theirs"] != "kept" {
		t.Fatalf("annotations after release: %v", got.Annotations)
	}
	// Another Tenant of the name is told the truth: not its namespace.
	other, _, _ := r.deleteNamespace(ctx, &erasureTarget{tenantRef: tenantRef{Name: "a", UID: "uid-2", Namespace: "team-a"}})
	if !strings.Contains(other, "carries no ownership mark") {
		t.Fatalf("another Tenant's erasure says %q", other)
	}
}
