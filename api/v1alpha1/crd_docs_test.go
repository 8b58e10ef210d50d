package v1alpha1_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// Every spec and status field carries the description that kubectl explain
// prints: a field without one is a field users must guess about.
func TestEveryFieldIsDocumented(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) != 4 {
		t.Fatalf("want the 4 generated CRDs, got %v (%v)", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(data, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, v := range crd.Spec.Versions {
			root := v.Schema.OpenAPIV3Schema
			if root.Description == "" {
				t.Errorf("%s: the kind has no description", crd.Name)
			}
			for _, top := range []string{"spec", "status"} {
				prop, ok := root.Properties[top]
				if !ok {
					t.Errorf("%s: no %s", crd.Name, top)
					continue
				}
				walk(t, crd.Name+"."+top, prop)
			}
		}
	}
}

func walk(t *testing.T, path string, s apiextensionsv1.JSONSchemaProps) {
	t.Helper()
	if strings.TrimSpace(s.Description) == "" {
		t.Errorf("%s has no description", path)
	}
	for name, p := range s.Properties {
		walk(t, path+"."+name, p)
	}
	if s.Items != nil && s.Items.Schema != nil {
		for name, p := range s.Items.Schema.Properties {
			walk(t, path+"[]."+name, p)
		}
	}
}
