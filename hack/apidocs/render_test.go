package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

var (
	crdDir    = filepath.Join("..", "..", "config", "crd", "bases")
	reference = filepath.Join("..", "..", "docs", "api-reference.md")
)

// The committed reference is the one the CRDs generate: a field, rule or
// column changed in api/v1alpha1 without regenerating fails here.
func TestReferenceIsUpToDate(t *testing.T) {
	want, err := renderDir(crdDir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(reference)
	if err != nil {
		t.Fatalf("read docs/api-reference.md: %v (run `%s` and commit it)", err, regenerate)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/api-reference.md is stale (first difference at line %d): run `%s` and commit docs/api-reference.md", firstDiffLine(got, want), regenerate)
	}
}

func firstDiffLine(a, b []byte) int {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return i + 1
		}
	}
	return min(len(al), len(bl)) + 1
}

func loadCRDs(t *testing.T) []apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	crds, err := readCRDs(crdDir)
	if err != nil {
		t.Fatal(err)
	}
	return crds
}

// Every kind, short name, printer column, field (by JSON path), default,
// enum value and CEL rule message of every CRD is in the reference.
func TestReferenceCoversEveryKindFieldAndRule(t *testing.T) {
	crds := loadCRDs(t)
	doc := string(render(crds))
	kinds := map[string]bool{}
	for _, crd := range crds {
		kinds[crd.Spec.Names.Kind] = true
		mustContain(t, doc, "\n## "+crd.Spec.Names.Kind+"\n")
		for _, sn := range crd.Spec.Names.ShortNames {
			mustContain(t, doc, "| Short names | "+code(sn))
		}
		for _, v := range crd.Spec.Versions {
			for _, c := range v.AdditionalPrinterColumns {
				mustContain(t, doc, "| "+cell(c.Name)+" | "+code(c.JSONPath)+" |")
			}
			root := v.Schema.OpenAPIV3Schema
			for _, r := range root.XValidations {
				mustContain(t, doc, "- "+quote(r.Message))
			}
			for name, p := range root.Properties {
				if name == "apiVersion" || name == "kind" || name == "metadata" {
					continue
				}
				mustContain(t, doc, "### "+crd.Spec.Names.Kind+" `."+name+"`")
				walk(t, section(doc, crd.Spec.Names.Kind), "."+name, p)
			}
		}
	}
	// The kinds the operator is known to serve; others (MetaApp...) are
	// picked up from their CRDs without a change here.
	for _, k := range []string{"Tenant", "MetaChannel", "DeletionRequest"} {
		if !kinds[k] {
			t.Errorf("no CRD of kind %s in %s", k, crdDir)
		}
	}
}

func walk(t *testing.T, doc, path string, s apiextensionsv1.JSONSchemaProps) {
	t.Helper()
	for _, r := range s.XValidations {
		if !strings.Contains(doc, quote(r.Message)) {
			t.Errorf("%s: rule message %q is missing", path, r.Message)
		}
	}
	obj, objPath := objectOf(s, path)
	if obj == nil {
		return
	}
	for name, p := range obj.Properties {
		fpath := objPath + "." + name
		row := "\n| " + code(fpath) + " | "
		i := strings.Index(doc, row)
		if i < 0 {
			t.Errorf("field %s has no row", fpath)
			continue
		}
		line := doc[i+1 : i+1+strings.Index(doc[i+1:], "\n")]
		if d := prose(p.Description); d != "" && !strings.Contains(line, cell(d)) {
			t.Errorf("field %s: row %q lacks its description", fpath, line)
		}
		if p.Default != nil && !strings.Contains(line, defaultOf(p)) {
			t.Errorf("field %s: row %q lacks its default %s", fpath, line, p.Default.Raw)
		}
		for _, e := range p.Enum {
			if !strings.Contains(line, code(string(e.Raw))) {
				t.Errorf("field %s: row %q lacks enum value %s", fpath, line, e.Raw)
			}
		}
		if p.Pattern != "" && !strings.Contains(line, code(p.Pattern)) {
			t.Errorf("field %s: row %q lacks its pattern", fpath, line)
		}
		walk(t, doc, fpath, p)
	}
}

// section is the part of the reference about kind.
func section(doc, kind string) string {
	i := strings.Index(doc, "\n## "+kind+"\n")
	if i < 0 {
		return ""
	}
	rest := doc[i+1:]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

func mustContain(t *testing.T, doc, s string) {
	t.Helper()
	if !strings.Contains(doc, s) {
		t.Errorf("the reference lacks %q", s)
	}
}

// A kind nobody told the generator about (as MetaApp will be) gets its
// section, its fields and its bounds from its CRD alone; the output does
// not depend on the order the CRDs are read in.
func TestNewKindIsPickedUpAndOutputIsSorted(t *testing.T) {
	min1 := int64(1)
	max5 := float64(5)
	zz := apiextensionsv1.CustomResourceDefinition{Spec: apiextensionsv1.CustomResourceDefinitionSpec{
		Group: "platform.omniflowcrm.com",
		Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: "Zebra", Plural: "zebras", ShortNames: []string{"zb"}},
		Scope: apiextensionsv1.NamespaceScoped,
		Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
			Name: "v1alpha1",
			Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
				Type: "object",
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"spec": {Type: "object", Description: "spec of a zebra.", Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"stripes": {Type: "integer", Description: "stripes is how many | stripes <it> has,\nas in `a<b>`.", Maximum: &max5},
						"sizes":   {Type: "object", AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Schema: &apiextensionsv1.JSONSchemaProps{XIntOrString: true}}},
						"name":    {Type: "string", MinLength: &min1, XValidations: apiextensionsv1.ValidationRules{{Rule: "self == oldSelf", Message: "name is immutable"}}},
					}},
				},
			}},
		}},
	}}
	crds := loadCRDs(t)
	forward := string(render(append(crds, zz)))
	backward := string(render(append([]apiextensionsv1.CustomResourceDefinition{zz}, crds...)))
	if forward != backward {
		t.Fatal("the reference depends on the order of the CRDs")
	}
	for _, s := range []string{
		"\n## Zebra\n",
		"| Short names | `zb` |",
		"| `.spec.name` | string | — | length >= 1; rule: “name is immutable” | — |",
		"| `.spec.sizes` | map[string]int-or-string | — |",
		"| `.spec.stripes` | integer | — | <= 5 | stripes is how many \\| stripes &lt;it&gt; has, as in `a<b>`. |",
	} {
		mustContain(t, forward, s)
	}
	if strings.Index(forward, "\n## Tenant\n") > strings.Index(forward, "\n## Zebra\n") {
		t.Error("kinds are not sorted by name")
	}
}
