package testenv

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// ConfigDir is config/<name> of this repository, wherever the test runs.
func ConfigDir(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "config", name)
}

// RenderDefault renders config/default with the pinned kustomize, as
// `make deploy` does (names prefixed, namespaces set), and returns the objects
// for which keep says yes.
func RenderDefault(keep func(*unstructured.Unstructured) bool) ([]*unstructured.Unstructured, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), ConfigDir("default"))
	if err != nil {
		return nil, fmt.Errorf("kustomize build config/default: %w", err)
	}
	var out []*unstructured.Unstructured
	for _, r := range res.Resources() {
		m, err := r.Map()
		if err != nil {
			return nil, fmt.Errorf("render %s %s: %w", r.GetKind(), r.GetName(), err)
		}
		if obj := (&unstructured.Unstructured{Object: m}); keep(obj) {
			out = append(out, obj)
		}
	}
	return out, nil
}

// IsAdmissionPolicy says whether obj is a ValidatingAdmissionPolicy or its binding.
func IsAdmissionPolicy(obj *unstructured.Unstructured) bool {
	return strings.HasPrefix(obj.GetKind(), "ValidatingAdmissionPolicy")
}

// InstallPolicies applies, for real, the admission policies and bindings that
// config/default ships, exactly as rendered for deployment. It returns what it
// applied, so that a test may remove them again.
func InstallPolicies(ctx context.Context, c client.Client) ([]*unstructured.Unstructured, error) {
	return ApplyDefault(ctx, c, IsAdmissionPolicy)
}

// IsEditorRole says whether obj is the ClusterRole that config/default
// aggregates into the built-in edit role.
func IsEditorRole(obj *unstructured.Unstructured) bool {
	return obj.GetKind() == "ClusterRole" && obj.GetLabels()["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
}

// ApplyDefault applies the cluster-scoped objects of config/default for which
// keep says yes, as rendered for deployment, and returns them.
func ApplyDefault(ctx context.Context, c client.Client, keep func(*unstructured.Unstructured) bool) ([]*unstructured.Unstructured, error) {
	objs, err := RenderDefault(keep)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("config/default ships none of the objects asked for")
	}
	for _, obj := range objs {
		if obj.GetNamespace() != "" {
			return nil, fmt.Errorf("%s %s is cluster-scoped but rendered in namespace %s", obj.GetKind(), obj.GetName(), obj.GetNamespace())
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner("testenv"), client.ForceOwnership); err != nil {
			return nil, fmt.Errorf("apply %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	return objs, nil
}
