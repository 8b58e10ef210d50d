package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// The tests below run the real helm binary, which `make test` builds from
// the Go module proxy (hack/setup-helm.sh) and passes as HELM_BIN.
func helmBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("HELM_BIN")
	if bin == "" {
		t.Skip("HELM_BIN is not set, so the chart is not rendered by helm: run `make test`, or `HELM_BIN=$(hack/setup-helm.sh) go test ./hack/chart`")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("HELM_BIN: %v", err)
	}
	return bin
}

// helm runs helm with args and returns its standard output, or the error
// with its standard error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	// Nothing of the user's helm configuration or plugins plays a part.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w: %s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// template renders the chart as release "omniflow" in namespace ns.
func template(t *testing.T, ns string, args ...string) []map[string]any {
	t.Helper()
	out, err := helm(t, append([]string{"template", "omniflow", chartPath(), "--namespace", ns}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, out)
}

func chartPath() string { return root + "/" + chartDir }

func decode(t *testing.T, out string) []map[string]any {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	var objs []map[string]any
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatalf("helm rendered invalid YAML: %v\n%s", err, doc)
		}
		if obj != nil {
			objs = append(objs, obj)
		}
	}
}

func byKey(t *testing.T, objs []map[string]any) map[string]map[string]any {
	t.Helper()
	m := map[string]map[string]any{}
	for _, o := range objs {
		k := fmt.Sprintf("%s %v/%v", o["kind"], get(o, "metadata", "namespace"), get(o, "metadata", "name"))
		if _, dup := m[k]; dup {
			t.Errorf("%s rendered twice", k)
		}
		m[k] = normalize(t, o)
	}
	return m
}

// equalObjects fails the test unless got and want hold the same objects.
func equalObjects(t *testing.T, got, want []map[string]any) {
	t.Helper()
	g, w := byKey(t, got), byKey(t, want)
	for k, wo := range w {
		if gv, ok := g[k]; !ok {
			t.Errorf("the chart lacks %s", k)
		} else if !reflect.DeepEqual(gv, wo) {
			gy, _ := yaml.Marshal(gv)
			wy, _ := yaml.Marshal(wo)
			t.Errorf("the chart's %s differs from config/'s:\n--- chart\n%s\n--- config\n%s", k, gy, wy)
		}
	}
	for k := range g {
		if _, ok := w[k]; !ok {
			t.Errorf("the chart renders %s, which config/ does not have", k)
		}
	}
}

func kustomize(t *testing.T, dirs ...string) []map[string]any {
	t.Helper()
	var all []map[string]any
	for _, d := range dirs {
		objs, err := build(root, d)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, objs...)
	}
	return all
}

func without(objs []map[string]any, kind string) []map[string]any {
	return slices.DeleteFunc(slices.Clone(objs), func(o map[string]any) bool { return o["kind"] == kind })
}

func TestHelmLint(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"--values", "testdata/all-options.yaml"},
	} {
		if out, err := helm(t, append([]string{"lint", "--strict", chartPath()}, args...)...); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	}
}

// With the default values the chart is config/ (kustomize build config/crd
// and config/default), but for the documented differences: the Namespace is
// Helm's (--create-namespace) unless namespace.create says otherwise, and the
// Prometheus Operator objects are off, as in config/default.
func TestHelmDefaultsRenderConfigDefault(t *testing.T) {
	got := template(t, kustomizeNamespace)
	want := append(kustomize(t, "config/crd"), without(kustomize(t, "config/default"), "Namespace")...)
	equalObjects(t, got, want)
	for _, o := range got {
		if o["kind"] == "CustomResourceDefinition" && get(o, "metadata", "annotations", "helm.sh/resource-policy") != "keep" {
			t.Errorf("CRD %v lacks helm.sh/resource-policy: keep", get(o, "metadata", "name"))
		}
	}
}

// With namespace.create and the monitoring toggles, the chart is config/
// exactly: the Namespace with its Pod Security label, and config/prometheus
// as config/default includes it when its line is uncommented.
func TestHelmCreatedNamespaceAndMonitoringRenderConfig(t *testing.T) {
	// The release record lives in another namespace (helm stores it before it
	// creates anything).
	got := template(t, "default", "--set", "namespace.create=true,namespace.name="+kustomizeNamespace,
		"--set", "monitoring.serviceMonitor.enabled=true,monitoring.podMonitor.enabled=true,monitoring.prometheusRule.enabled=true")
	prom, err := buildPrometheus(root)
	if err != nil {
		t.Fatal(err)
	}
	want := append(kustomize(t, "config/crd", "config/default"), prom...)
	equalObjects(t, got, want)
	ns := find(t, got, "Namespace", kustomizeNamespace)
	if get(ns, "metadata", "labels", "pod-security.kubernetes.io/enforce") != "restricted" {
		t.Errorf("the Namespace lacks pod-security.kubernetes.io/enforce: restricted: %v", ns["metadata"])
	}
	kinds := map[string]bool{}
	for _, o := range prom {
		kinds[o["kind"].(string)] = true
	}
	if !kinds["ServiceMonitor"] || !kinds["PrometheusRule"] {
		t.Fatalf("config/prometheus rendered only %v", kinds)
	}
}

// flagRE finds the manager's flags in cmd/manager/main.go.
var flagRE = regexp.MustCompile(`flag\.(?:[A-Za-z0-9]*)Var\(&[A-Za-z0-9_.]+,\s*"([a-z0-9-]+)"`)

// zapFlags are the flags zap.Options.BindFlags adds.
var zapFlags = []string{"zap-devel", "zap-encoder", "zap-log-level", "zap-stacktrace-level", "zap-time-encoding"}

func TestHelmRendersEveryOption(t *testing.T) {
	got := template(t, "default", "--values", "testdata/all-options.yaml")
	const ns = "omniflow-ops"
	deploy := find(t, got, "Deployment", "omniflow-controller-manager")
	spec := get(deploy, "spec", "template", "spec").(map[string]any)
	c := spec["containers"].([]any)[0].(map[string]any)
	var args []string
	for _, a := range c["args"].([]any) {
		args = append(args, a.(string))
	}
	wantArgs := []string{
		"--leader-elect",
		"--leader-election-namespace=omniflow-leases",
		"--metrics-bind-address=:9443",
		"--health-probe-bind-address=:9081",
		"--metrics-secure=false",
		"--enable-http2",
		"--default-storage-class=fast-ssd",
		"--postgres-admin-secret=omniflow-system/pg-admin",
		"--route=httproute",
		"--webhook-base-url=https://hooks.example.com",
		"--ingress-class=nginx",
		"--ingress-host=hooks.example.com",
		"--ingress-tls-secret=hooks-tls",
		"--ingress-annotation=nginx.ingress.kubernetes.io/proxy-body-size=4m",
		"--gateway=gateways/public",
		"--gateway-section=https",
		"--gateway-hostname=hooks.example.com",
		"--orphan-sweep-interval=5m",
		"--orphan-grace-period=72h",
		"--orphan-max-share=0.25",
		"--max-concurrent-reconciles=8",
		"--pprof-bind-address=127.0.0.1:6060",
		"--zap-log-level=debug",
		"--zap-encoder=console",
		"--zap-stacktrace-level=panic",
		"--zap-time-encoding=rfc3339",
		"--zap-devel",
		"--zap-log-level=2",
	}
	if !reflect.DeepEqual(args, wantArgs) {
		t.Errorf("manager args:\n got %q\nwant %q", args, wantArgs)
	}

	// Every flag the manager defines is reachable from the values: a new flag
	// without a value fails here.
	src, err := os.ReadFile(root + "/cmd/manager/main.go")
	if err != nil {
		t.Fatal(err)
	}
	flags := slices.Clone(zapFlags)
	for _, m := range flagRE.FindAllStringSubmatch(string(src), -1) {
		flags = append(flags, m[1])
	}
	if len(flags) < 20 {
		t.Fatalf("found only the flags %v in cmd/manager/main.go", flags)
	}
	for _, f := range flags {
		if f == "worker-image" || f == "namespace" {
			continue // set as $WORKER_IMAGE and $POD_NAMESPACE, checked below
		}
		if !slices.ContainsFunc(args, func(a string) bool { return a == "--"+f || strings.HasPrefix(a, "--"+f+"=") }) {
			t.Errorf("the manager flag --%s is not reachable from the chart's values", f)
		}
	}

	env := c["env"].([]any)
	if e := env[0].(map[string]any); e["name"] != "POD_NAMESPACE" || get(e, "valueFrom", "fieldRef", "fieldPath") != "metadata.namespace" {
		t.Errorf("operator namespace env: %v", e)
	}
	if e := env[1].(map[string]any); e["name"] != "WORKER_IMAGE" || e["value"] != "registry.example.com/omniflow-worker:v9.9.9" {
		t.Errorf("worker image env: %v", e)
	}
	if e := env[2].(map[string]any); e["name"] != "GOMEMLIMIT" {
		t.Errorf("extraEnv: %v", env)
	}
	for _, check := range []struct {
		what      string
		got, want any
	}{
		{"namespace", get(deploy, "metadata", "namespace"), ns},
		{"replicas", get(deploy, "spec", "replicas"), 3.0},
		{"image", c["image"], "registry.example.com/omniflow:v9.9.9"},
		{"imagePullPolicy", c["imagePullPolicy"], "Always"},
		{"imagePullSecrets", spec["imagePullSecrets"], []any{map[string]any{"name": "regcred"}}},
		{"metrics port", get(c["ports"].([]any)[0].(map[string]any), "containerPort"), 9443.0},
		{"probe port", get(c["ports"].([]any)[1].(map[string]any), "containerPort"), 9081.0},
		{"resources", get(c, "resources", "limits", "memory"), "1Gi"},
		{"securityContext", get(c, "securityContext", "runAsGroup"), 65532.0},
		{"podSecurityContext", get(spec, "securityContext", "runAsUser"), 65532.0},
		{"podAnnotations", get(deploy, "spec", "template", "metadata", "annotations", "example.com/team"), "platform"},
		{"podLabels", get(deploy, "spec", "template", "metadata", "labels", "example.com/cost-center"), "42"},
		{"selector unchanged", get(deploy, "spec", "selector", "matchLabels", "example.com/cost-center"), nil},
		{"priorityClassName", spec["priorityClassName"], "system-cluster-critical"},
		{"nodeSelector", get(spec, "nodeSelector", "kubernetes.io/os"), "linux"},
		{"tolerations", get(spec["tolerations"].([]any)[0].(map[string]any), "key"), "dedicated"},
		{"affinity", get(spec, "affinity", "nodeAffinity") != nil, true},
		{"topologySpreadConstraints", len(spec["topologySpreadConstraints"].([]any)), 1},
	} {
		if !reflect.DeepEqual(check.got, check.want) {
			t.Errorf("%s: got %#v, want %#v", check.what, check.got, check.want)
		}
	}

	namespace := find(t, got, "Namespace", ns)
	for k, v := range map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "example.com/owner": "platform"} {
		if get(namespace, "metadata", "labels", k) != v {
			t.Errorf("Namespace label %s: %v", k, get(namespace, "metadata", "labels"))
		}
	}
	var kinds []string
	for _, o := range got {
		kinds = append(kinds, o["kind"].(string))
		if o["kind"] == "CustomResourceDefinition" {
			t.Errorf("crds.install=false rendered CRD %v", get(o, "metadata", "name"))
		}
		want := ns
		if strings.Contains(get(o, "metadata", "name").(string), "leader-election") {
			want = "omniflow-leases" // leaderElection.namespace
		}
		if n := get(o, "metadata", "namespace"); n != nil && n != want {
			t.Errorf("%s %v is in namespace %v, not %s", o["kind"], get(o, "metadata", "name"), n, want)
		}
		if strings.HasPrefix(o["apiVersion"].(string), "monitoring.coreos.com/") && get(o, "metadata", "labels", "release") != "prometheus" {
			t.Errorf("%s lacks monitoring labels: %v", o["kind"], get(o, "metadata", "labels"))
		}
		if o["kind"] == "ServiceMonitor" {
			for _, ep := range get(o, "spec", "endpoints").([]any) {
				if s := ep.(map[string]any)["scheme"]; s != "http" {
					t.Errorf("metrics.secure=false leaves the ServiceMonitor's scheme %v", s)
				}
			}
		}
	}
	if !slices.Contains(kinds, "ServiceMonitor") || !slices.Contains(kinds, "PrometheusRule") {
		t.Errorf("monitoring toggles rendered %v", kinds)
	}
	// The operator may write its Lease in leaderElection.namespace.
	rb := find(t, got, "RoleBinding", "omniflow-leader-election-rolebinding")
	if sub := rb["subjects"].([]any)[0].(map[string]any); sub["namespace"] != ns || get(rb, "metadata", "namespace") != "omniflow-leases" {
		t.Errorf("leader-election RoleBinding in %v for %v", get(rb, "metadata", "namespace"), sub)
	}
	// The namespace-marks policy names the operator's ServiceAccount in its namespace.
	policy := find(t, got, "ValidatingAdmissionPolicy", "omniflow-namespace-marks")
	if s := fmt.Sprint(get(policy, "spec", "variables")); !strings.Contains(s, `"`+ns+`"`) {
		t.Errorf("namespace-marks policy does not name namespace %s: %s", ns, s)
	}
}

// Bad values are refused before anything reaches a cluster, with a message
// naming the value.
func TestHelmRefusesBadValues(t *testing.T) {
	for _, c := range []struct {
		set  string
		want string
	}{
		{"replicaCount=two", "replicaCount"},
		{"unknownValue=1", "unknownValue"},
		{"image.tagg=v1", "tagg"},
		{"route.kind=loadbalancer", "route.kind"},
		{"route.kind=httproute", "route.gateway.ref"},
		{"replicaCount=2,leaderElection.enabled=false", "leaderElection.enabled"},
		{"orphanSweep.gracePeriod=7days", "gracePeriod"},
		{"orphanSweep.maxShare=2", "maxShare"},
		{"postgres.adminSecret=pg-admin", "adminSecret"},
		{"metrics.port=0", "port"},
		{"crds.install=maybe", "crds.install"},
	} {
		t.Run(c.set, func(t *testing.T) {
			_, err := helm(t, "template", "omniflow", chartPath(), "--namespace", kustomizeNamespace, "--set", c.set)
			if err == nil {
				t.Fatalf("--set %s was accepted", c.set)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("--set %s: the error does not name %s: %v", c.set, c.want, err)
			}
		})
	}
}
