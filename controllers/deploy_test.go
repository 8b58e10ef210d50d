package controllers_test

import (
	"context"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// What `make deploy` applies must be accepted by a real API server:
// config/default is rendered with the pinned kustomize and every object is
// applied with a server-side dry run (validation, defaulting, RBAC rules
// that name real resources).
func TestDeployManifestsAreAcceptedByTheAPIServer(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	for _, dir := range []string{"default", "crd", "prometheus"} {
		k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
		res, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("..", "config", dir))
		g.Expect(err).NotTo(HaveOccurred(), "kustomize build config/%s", dir)
		items := res.Resources()
		g.Expect(items).NotTo(BeEmpty())
		if dir == "prometheus" {
			// The Prometheus Operator's kinds are not in this API server: check
			// that the overlay renders and names what it should.
			var kinds []string
			for _, r := range items {
				kinds = append(kinds, r.GetKind())
			}
			g.Expect(kinds).To(ConsistOf("ServiceMonitor", "PodMonitor", "PrometheusRule", "PrometheusRule"))
			continue
		}
		kinds := map[string]bool{}
		var objs []*unstructured.Unstructured
		for _, r := range items {
			m, err := r.Map()
			g.Expect(err).NotTo(HaveOccurred())
			obj := &unstructured.Unstructured{Object: m}
			kinds[obj.GetKind()] = true
			if obj.GetKind() == "Namespace" {
				// Namespaced objects need their namespace for real.
				ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: obj.GetName()}}
				g.Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, ns))).To(Succeed())
				continue
			}
			objs = append(objs, obj)
		}
		for _, obj := range objs {
			// Server-side apply, as `make deploy` does; the CRDs already exist here.
			err := k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.DryRunAll,
				client.FieldOwner("deploy-test"), client.ForceOwnership)
			g.Expect(err).To(Succeed(), "%s %s/%s", obj.GetKind(), obj.GetNamespace(), obj.GetName())
		}
		if dir == "default" {
			for _, want := range []string{"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service"} {
				g.Expect(kinds).To(HaveKey(want))
			}
			g.Expect(kinds).NotTo(HaveKey("CustomResourceDefinition"), "config/default must never carry the CRDs (undeploy would erase every tenant)")
		}
		if dir == "crd" {
			for _, r := range items {
				g.Expect(r.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
			}
		}
	}
}
