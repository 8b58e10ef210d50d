package controllers

import (
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	"github.com/omniflowcrm/omniflow-operator/internal/ingest"
	"github.com/omniflowcrm/omniflow-operator/internal/mediafetch"
	"github.com/omniflowcrm/omniflow-operator/internal/reseal"
)

// knownMetrics are the series the rules may use: the operator's own, the
// worker's, controller-runtime's and Prometheus' up.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{"up": true}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	ch := make(chan *prometheus.Desc, 16)
	go func() {
		for _, c := range []prometheus.Collector{erasureAtRiskGauge, erasureDeadlineGauge, erasureDuration,
			orphansFound, sweepStoodDown, orphansErased, orphanStepFailures, erasureStepFailures, deletionRequestsTotal, deletionRequestsAtRisk, deletionRequestsAtRiskNow,
			mediaTokenRefused} {
			c.Describe(ch)
		}
		close(ch)
	}()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			known[m[1]] = true
		}
	}
	// controller-runtime's per-controller series exist once the suite's operator has
	// started its controllers (they are created with their labels then): a test run on
	// its own may come first.
	gomega.NewWithT(t).Eventually(func() ([]string, error) {
		families, err := metrics.Registry.Gather()
		names := make([]string, 0, len(families))
		for _, f := range families {
			names = append(names, f.GetName())
		}
		return names, err
	}).WithTimeout(time.Minute).Should(gomega.ContainElement("controller_runtime_reconcile_errors_total"))
	// The worker's media fetcher registers on the worker's registry, as the worker does.
	workerMetrics := ingest.NewMetrics()
	mediafetch.NewMetrics(workerMetrics.Registry, time.Now)
	reseal.NewMetrics(workerMetrics.Registry)
	for _, g := range []prometheus.Gatherer{metrics.Registry, workerMetrics.Registry} {
		families, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			known[f.GetName()] = true
		}
	}
	return known
}

// Every rule in config/prometheus parses with Prometheus' own rule parser,
// and every metric it reads exists: an alert on a misspelt series would
// never fire.
func TestPrometheusRulesParseAndReadExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile("../config/prometheus/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	known := knownMetrics(t)
	alerts := map[string]bool{}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var pr struct {
			Kind string         `json:"kind"`
			Spec map[string]any `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &pr); err != nil {
			t.Fatal(err)
		}
		if pr.Kind != "PrometheusRule" {
			t.Fatalf("unexpected kind %q in rules.yaml", pr.Kind)
		}
		groups, err := yaml.Marshal(pr.Spec)
		if err != nil {
			t.Fatal(err)
		}
		rgs, errs := rulefmt.Parse(groups, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
		for _, e := range errs {
			t.Errorf("rules.yaml: %v", e)
		}
		if rgs == nil {
			continue
		}
		for _, g := range rgs.Groups {
			for _, r := range g.Rules {
				alerts[r.Alert] = true
				expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
				if err != nil {
					t.Errorf("%s: %v", r.Alert, err)
					continue
				}
				parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
					if vs, ok := n.(*parser.VectorSelector); ok && !known[vs.Name] {
						t.Errorf("%s reads %s, which nothing exports", r.Alert, vs.Name)
					}
					return nil
				})
			}
		}
	}
	for _, want := range []string{"OmniflowOperatorAbsent", "OmniflowReconcileErrors", "OmniflowDeletionRequestAtRisk",
		"OmniflowWorkerStoreErrors", "OmniflowTenantErasureAtRisk", "OmniflowSharedFilesPendingTooLong", "OmniflowMediaTokenRefused"} {
		if !alerts[want] {
			t.Errorf("no alert %s in config/prometheus/rules.yaml", want)
		}
	}
}
