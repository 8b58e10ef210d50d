package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

var crdNames = []string{
	"deletionrequests.platform.omniflowcrm.com",
	"metaapps.platform.omniflowcrm.com",
	"metachannels.platform.omniflowcrm.com",
	"tenants.platform.omniflowcrm.com",
}

// helm install, upgrade and uninstall against a real API server: the chart
// creates the namespace with its Pod Security label and the CRDs, an upgrade
// changes the CRDs (they are templates, not crds/), and neither turning
// crds.install off nor uninstalling deletes them.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	helmBin(t)
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, or export KUBEBUILDER_ASSETS=$(hack/setup-envtest.sh)")
	}
	testenv.SetLogger()
	// No CRDs: the chart installs them.
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	user, err := env.AddUser(envtest.User{Name: "helm", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := helm(t, append(args, "--kubeconfig", kc)...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	ctx := context.Background()
	crdsHave := func(annotation string) {
		t.Helper()
		for _, name := range crdNames {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := c.Get(ctx, client.ObjectKey{Name: name}, &crd); err != nil {
				t.Fatalf("CRD %s: %v", name, err)
			}
			if annotation != "" && crd.Annotations[annotation] != "true" {
				t.Errorf("CRD %s lacks %s: %v", name, annotation, crd.Annotations)
			}
		}
	}

	// The release record lives in default; the chart makes omniflow-system.
	run("install", "omniflow", chartPath(), "--namespace", "default",
		"--set", "namespace.create=true,namespace.name="+kustomizeNamespace)
	var ns corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: kustomizeNamespace}, &ns); err != nil {
		t.Fatal(err)
	}
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace labels: %v", ns.Labels)
	}
	crdsHave("")
	var sa corev1.ServiceAccount
	if err := c.Get(ctx, client.ObjectKey{Namespace: kustomizeNamespace, Name: "omniflow-controller-manager"}, &sa); err != nil {
		t.Fatalf("the operator's ServiceAccount: %v", err)
	}

	// A later chart whose CRDs changed: helm upgrade applies the change.
	next := copyChart(t)
	crds := filepath.Join(next, "templates", "crds.yaml")
	data, err := os.ReadFile(crds)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.ReplaceAll(string(data), "    helm.sh/resource-policy: keep\n", "    helm.sh/resource-policy: keep\n    omniflow.test/upgraded: \"true\"\n")
	if strings.Count(changed, "omniflow.test/upgraded") != len(crdNames) {
		t.Fatalf("could not mark the CRDs of the copied chart")
	}
	if err := os.WriteFile(crds, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	run("upgrade", "omniflow", next, "--namespace", "default",
		"--set", "namespace.create=true,namespace.name="+kustomizeNamespace)
	crdsHave("omniflow.test/upgraded")

	// crds.install=false takes the CRDs out of the release and leaves them.
	run("upgrade", "omniflow", next, "--namespace", "default",
		"--set", "namespace.create=true,namespace.name="+kustomizeNamespace, "--set", "crds.install=false")
	crdsHave("omniflow.test/upgraded")
	run("upgrade", "omniflow", next, "--namespace", "default",
		"--set", "namespace.create=true,namespace.name="+kustomizeNamespace)

	run("uninstall", "omniflow", "--namespace", "default")
	crdsHave("omniflow.test/upgraded")
	err = c.Get(ctx, client.ObjectKey{Namespace: kustomizeNamespace, Name: "omniflow-controller-manager"}, &sa)
	if !apierrors.IsNotFound(err) {
		t.Errorf("after uninstall the operator's ServiceAccount: %v", err)
	}

	// CRDs that Helm does not own (from chart 0.1.0's crds/, or kubectl):
	// the chart refuses to take them over until they are marked as the
	// release's, as README.md says.
	for _, name := range crdNames {
		patch := []byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":null},"annotations":{"meta.helm.sh/release-name":null,"meta.helm.sh/release-namespace":null}}}`)
		crd := &apiextensionsv1.CustomResourceDefinition{}
		crd.Name = name
		if err := c.Patch(ctx, crd, client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := helm(t, "install", "omniflow", chartPath(), "--namespace", "omniflow-ops", "--create-namespace", "--kubeconfig", kc); err == nil {
		t.Fatalf("helm took over CRDs it does not own:\n%s", out)
	} else if !strings.Contains(err.Error(), "invalid ownership metadata") {
		t.Fatalf("helm install over unowned CRDs: %v", err)
	}
	for _, name := range crdNames {
		patch := []byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":"Helm"},"annotations":{"meta.helm.sh/release-name":"omniflow","meta.helm.sh/release-namespace":"omniflow-ops"}}}`)
		crd := &apiextensionsv1.CustomResourceDefinition{}
		crd.Name = name
		if err := c.Patch(ctx, crd, client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Fatal(err)
		}
	}
	out := run("install", "omniflow", chartPath(), "--namespace", "omniflow-ops", "--create-namespace")
	crdsHave("")
	// --create-namespace makes a bare namespace: the notes say how to label it.
	if !strings.Contains(out, "kubectl label namespace omniflow-ops pod-security.kubernetes.io/enforce=restricted") {
		t.Errorf("the install notes do not say how to label the namespace:\n%s", out)
	}
}

// copyChart copies the chart to a temporary directory.
func copyChart(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "omniflow-operator")
	src := chartPath()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}
