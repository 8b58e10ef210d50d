package controllers_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// Every sample is applied as a user would: the Tenant first, then, once the
// operator has made its namespace, the rest.
func TestSamplesAreAccepted(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	files, err := filepath.Glob(filepath.Join("..", "config", "samples", "platform_*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(files).NotTo(BeEmpty())

	var tenants, rest []*unstructured.Unstructured
	for _, f := range files {
		for _, obj := range readObjects(t, f) {
			if obj.GetKind() == "Tenant" {
				tenants = append(tenants, obj)
			} else {
				rest = append(rest, obj)
			}
		}
	}
	g.Expect(tenants).To(HaveLen(1))
	kinds := map[string]bool{}
	for _, obj := range append(tenants, rest...) {
		kinds[obj.GetKind()] = true
	}
	g.Expect(kinds).To(HaveKey("MetaChannel"))
	g.Expect(kinds).To(HaveKey("DeletionRequest"))
	g.Expect(kinds).To(HaveKey("Secret"))

	for _, obj := range tenants {
		g.Expect(k8s.Create(ctx, obj)).To(Succeed(), "sample %s %s", obj.GetKind(), obj.GetName())
	}
	var tn platformv1.Tenant
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: tenants[0].GetName()}, &tn)).To(Succeed())
	g.Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Name: tn.NamespaceName()}, &corev1.Namespace{})
	}, timeout, interval).Should(Succeed())
	for _, obj := range rest {
		g.Expect(obj.GetNamespace()).To(Equal(tn.NamespaceName()), "samples live in the sample tenant's namespace")
		g.Expect(k8s.Create(ctx, obj)).To(Succeed(), "sample %s %s", obj.GetKind(), obj.GetName())
	}
}

func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if err.Error() == "EOF" {
				return out
			}
			t.Fatalf("decode %s: %v", path, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}
