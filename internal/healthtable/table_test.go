package healthtable_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/healthtable"
)

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// The health functions write Reconciling and Stalled so that the real kstatus
// library computes, for every row, the health the table promises.
func TestKstatusComputesTheTableFromTheConditionsTheOperatorWrites(t *testing.T) {
	t.Parallel()
	for _, r := range healthtable.Rows {
		t.Run(r.Key(), func(t *testing.T) {
			t.Parallel()
			u, err := healthtable.Unstructured(r.Object())
			if err != nil {
				t.Fatal(err)
			}
			res, err := status.Compute(u)
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Status) != string(r.Want) {
				t.Fatalf("kstatus = %s (%s), want %s", res.Status, res.Message, r.Want)
			}
			if got := healthtable.KeyOf(r.Object()); got != r.Key() {
				t.Fatalf("KeyOf(Object()) = %s, want %s", got, r.Key())
			}
		})
	}
}

// A spec change the operator has not yet judged is in progress, whatever
// the conditions still say.
func TestKstatusReadsAnUnobservedGenerationAsInProgress(t *testing.T) {
	t.Parallel()
	for _, r := range healthtable.Rows {
		u, err := healthtable.Unstructured(r.Object())
		if err != nil {
			t.Fatal(err)
		}
		u.SetGeneration(2)
		res, err := status.Compute(u)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != status.InProgressStatus {
			t.Fatalf("%s with generation 2 observed 1: kstatus = %s, want InProgress", r.Key(), res.Status)
		}
		if got := argoHealth(t, luaScript(t), u.Object); got != "Progressing" {
			t.Fatalf("%s with generation 2 observed 1: Argo CD health = %s, want Progressing", r.Key(), got)
		}
	}
}

func luaScript(t *testing.T) string { return repoFile(t, "docs/gitops/health.lua") }

// argoHealth runs an Argo CD health script as Argo CD does: obj is the
// object, the script returns {status, message}.
func argoHealth(t *testing.T, script string, obj map[string]any) string {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		t.Fatalf("health script: %v", err)
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health script returned %s, want a table", L.Get(-1).Type())
	}
	return ret.RawGetString("status").String()
}

func toLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case map[string]any:
		tb := L.NewTable()
		for k, e := range x {
			tb.RawSetString(k, toLua(L, e))
		}
		return tb
	case []any:
		tb := L.NewTable()
		for _, e := range x {
			tb.Append(toLua(L, e))
		}
		return tb
	case string:
		return lua.LString(x)
	case bool:
		return lua.LBool(x)
	case int64:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case nil:
		return lua.LNil
	}
	panic("unexpected value in an unstructured object")
}

// The Argo CD health check (docs/gitops/health.lua, run by gopher-lua)
// agrees with kstatus on every row.
func TestArgoCDHealthCheckAgreesWithTheTable(t *testing.T) {
	t.Parallel()
	script := luaScript(t)
	for _, r := range healthtable.Rows {
		u, err := healthtable.Unstructured(r.Object())
		if err != nil {
			t.Fatal(err)
		}
		if got, want := argoHealth(t, script, u.Object), healthtable.ArgoCD(r.Want); got != want {
			t.Errorf("%s: Argo CD health = %s, want %s", r.Key(), got, want)
		}
	}
	bare := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "x", "generation": int64(1)}}}
	if got := argoHealth(t, script, bare.Object); got != "Progressing" {
		t.Errorf("object without status: Argo CD health = %s, want Progressing", got)
	}
}

// The ConfigMap snippet and docs/gitops.md carry the tested script, for
// each kind.
func TestArgoCDSnippetsCarryTheTestedScript(t *testing.T) {
	t.Parallel()
	script := luaScript(t)
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal([]byte(repoFile(t, "docs/gitops/argocd-cm.yaml")), &cm); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{healthtable.Tenant, healthtable.MetaChannel, healthtable.DeletionRequest, healthtable.MetaApp} {
		key := "resource.customizations.health." + platformv1.GroupVersion.Group + "_" + kind
		if cm.Data[key] != script {
			t.Errorf("argocd-cm.yaml %s is not docs/gitops/health.lua", key)
		}
	}
	if !strings.Contains(repoFile(t, "docs/gitops.md"), "```lua\n"+script+"```\n") {
		t.Error("docs/gitops.md does not carry docs/gitops/health.lua verbatim in a lua block")
	}
}

const (
	tableBegin = "<!-- health-table: generated from internal/healthtable; do not edit -->\n"
	tableEnd   = "<!-- end health-table -->"
)

// The README's health table is the tested one. Regenerate it with
// UPDATE_README=1 go test ./internal/healthtable/.
func TestREADMEHealthTableIsTheTestedTable(t *testing.T) {
	readme := repoFile(t, "README.md")
	begin := strings.Index(readme, tableBegin)
	end := strings.Index(readme, tableEnd)
	if begin < 0 || end < begin {
		t.Fatalf("README.md lacks the markers %q ... %q", tableBegin, tableEnd)
	}
	want := healthtable.Markdown()
	if got := readme[begin+len(tableBegin) : end]; got != want {
		if os.Getenv("UPDATE_README") == "" {
			t.Fatalf("README.md health table differs from the rendered table; run UPDATE_README=1 go test ./internal/healthtable/\nwant:\n%s", want)
		}
		_, file, _, _ := runtime.Caller(0)
		path := filepath.Join(filepath.Dir(file), "..", "..", "README.md")
		if err := os.WriteFile(path, []byte(readme[:begin+len(tableBegin)]+want+readme[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The Flux example checks health (wait: true or healthChecks naming our
// kinds, which Flux evaluates with kstatus, as the tests above do) and never
// prunes Tenants.
func TestFluxExampleWaitsForHealthAndNeverPrunes(t *testing.T) {
	t.Parallel()
	docs := strings.Split(repoFile(t, "docs/gitops/flux-kustomization.yaml"), "\n---\n")
	if len(docs) == 0 {
		t.Fatal("no Kustomization in the Flux example")
	}
	for _, doc := range docs {
		var k struct {
			Kind string `json:"kind"`
			Spec struct {
				Prune        *bool `json:"prune"`
				Wait         bool  `json:"wait"`
				HealthChecks []struct {
					APIVersion string `json:"apiVersion"`
					Kind       string `json:"kind"`
				} `json:"healthChecks"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &k); err != nil {
			t.Fatal(err)
		}
		if k.Kind != "Kustomization" {
			t.Fatalf("kind %q in the Flux example", k.Kind)
		}
		if k.Spec.Prune == nil || *k.Spec.Prune {
			t.Error("a Kustomization of Tenants must set prune: false (deleting a Tenant erases its data)")
		}
		if !k.Spec.Wait && len(k.Spec.HealthChecks) == 0 {
			t.Error("a Kustomization neither waits nor checks health")
		}
		for _, h := range k.Spec.HealthChecks {
			if h.APIVersion != platformv1.GroupVersion.String() {
				t.Errorf("health check of %s %s", h.APIVersion, h.Kind)
			}
		}
	}
}
