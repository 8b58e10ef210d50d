package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The committed chart is what config/ renders to: a change to config/
// without `make chart` fails here.
func TestChartIsInSyncWithKustomize(t *testing.T) {
	root := filepath.Join("..", "..")
	want, err := render(root)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(root, chartDir, name))
		if err != nil {
			t.Fatalf("%s: %v (run `make chart`)", name, err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s is out of date: run `make chart` and commit the result", name)
		}
	}
	entries, err := os.ReadDir(filepath.Join(root, chartDir, "templates"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("templates/ holds %d files; the chart is generated, put changes in config/", len(entries))
	}
}

// Rendering the template with the default values gives back the objects of
// config/default, in the release namespace (what `helm template` would do
// with these two substitutions, the only template actions in the chart).
func TestChartRendersTheKustomizeObjects(t *testing.T) {
	root := filepath.Join("..", "..")
	files, err := render(root)
	if err != nil {
		t.Fatal(err)
	}
	tpl := string(files["templates/operator.yaml"])
	image := "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
	if strings.Count(tpl, "{{") != strings.Count(tpl, "{{ .Release.Namespace }}")+2*strings.Count(tpl, image) {
		t.Fatalf("the template uses actions this test does not render")
	}
	rendered := strings.ReplaceAll(tpl, "{{ .Release.Namespace }}", kustomizeNamespace)
	rendered = strings.ReplaceAll(rendered, image, kustomizeImage)
	objs, err := build(root, "config/default")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, obj := range objs {
		if obj["kind"] == "Namespace" {
			continue
		}
		data, _ := yaml.Marshal(obj)
		if !strings.Contains(rendered, string(data)) {
			t.Errorf("the chart lacks %s %v", obj["kind"], obj["metadata"])
		}
		kinds = append(kinds, obj["kind"].(string))
	}
	if len(kinds) < 8 {
		t.Fatalf("config/default rendered only %v", kinds)
	}
}
