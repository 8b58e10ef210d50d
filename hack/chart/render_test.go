package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"sigs.k8s.io/yaml"
)

var root = filepath.Join("..", "..")

// handWritten are the chart files `make chart` does not write; the Helm tests
// check them against config/.
var handWritten = []string{
	"templates/NOTES.txt",
	"templates/_helpers.tpl",
	"templates/deployment.yaml",
	"values.schema.json",
	"values.yaml",
}

// The committed chart is what config/ renders to: a change to config/
// without `make chart` fails here.
func TestChartIsInSyncWithKustomize(t *testing.T) {
	want, err := render(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name, data := range want {
		names = append(names, name)
		got, err := os.ReadFile(filepath.Join(root, chartDir, name))
		if err != nil {
			t.Fatalf("%s: %v (run `make chart`)", name, err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s is out of date: run `make chart` and commit the result", name)
		}
	}
	sort.Strings(names)
	if !reflect.DeepEqual(names, generated) {
		t.Errorf("render writes %v, the list generated says %v", names, generated)
	}
	var files []string
	err = filepath.WalkDir(filepath.Join(root, chartDir), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(filepath.Join(root, chartDir), path)
		files = append(files, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	all := append(append([]string{}, generated...), handWritten...)
	sort.Strings(all)
	sort.Strings(files)
	if !reflect.DeepEqual(files, all) {
		t.Errorf("the chart holds %v, want %v: generated files come from config/ (`make chart`), hand-written ones are listed in handWritten and tested against config/", files, all)
	}
}

// The defaults of values.yaml that shape the Deployment are config/manager's,
// so that the two cannot drift even where the helm binary is not at hand.
func TestValuesDefaultsAreConfigs(t *testing.T) {
	var values map[string]any
	data, err := os.ReadFile(filepath.Join(root, chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	objs, err := build(root, "config/default")
	if err != nil {
		t.Fatal(err)
	}
	deploy := normalize(t, find(t, objs, "Deployment", "omniflow-controller-manager"))
	spec := get(deploy, "spec", "template", "spec").(map[string]any)
	container := spec["containers"].([]any)[0].(map[string]any)
	image := get(values, "image", "repository").(string) + ":" + "dev" // the chart's appVersion
	for _, c := range []struct {
		value string
		got   any
		want  any
	}{
		{"replicaCount", values["replicaCount"], get(deploy, "spec", "replicas")},
		{"resources", values["resources"], container["resources"]},
		{"podSecurityContext", values["podSecurityContext"], spec["securityContext"]},
		{"securityContext", values["securityContext"], container["securityContext"]},
		{"image.repository:appVersion", image, container["image"]},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("values.yaml %s is %v, config/manager says %v", c.value, c.got, c.want)
		}
	}
}

// The schema is JSON and strict: each object of it that lists properties
// refuses others, except the Kubernetes objects passed through as they are.
func TestValuesSchemaIsStrict(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	var walk func(path string, s map[string]any)
	walk = func(path string, s map[string]any) {
		props, ok := s["properties"].(map[string]any)
		if !ok {
			return
		}
		if s["additionalProperties"] != false {
			t.Errorf("schema %s lists properties but accepts others", path)
		}
		for k, v := range props {
			walk(path+"."+k, v.(map[string]any))
		}
	}
	walk("", schema)
	var values map[string]any
	data, err = os.ReadFile(filepath.Join(root, chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	// Every value is described, and every described value has a default.
	var compare func(path string, v map[string]any, s map[string]any)
	compare = func(path string, v map[string]any, s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		for k := range props {
			if _, ok := v[k]; !ok {
				t.Errorf("schema describes %s%s, values.yaml has no default for it", path, k)
			}
		}
		for k, val := range v {
			ps, ok := props[k].(map[string]any)
			if !ok {
				t.Errorf("values.yaml has %s%s, the schema does not describe it", path, k)
				continue
			}
			if m, ok := val.(map[string]any); ok && ps["properties"] != nil {
				compare(path+k+".", m, ps)
			}
		}
	}
	compare("", values, schema)
}

func find(t *testing.T, objs []map[string]any, kind, name string) map[string]any {
	t.Helper()
	for _, o := range objs {
		if o["kind"] == kind && get(o, "metadata", "name") == name {
			return o
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return nil
}

func get(obj map[string]any, path ...string) any {
	var v any = obj
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// normalize gives obj the types a YAML decoder gives (float64 numbers), so
// that objects from kustomize and from helm compare equal.
func normalize(t *testing.T, obj map[string]any) map[string]any {
	t.Helper()
	data, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := yaml.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
