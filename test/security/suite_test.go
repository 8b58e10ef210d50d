package security_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

const (
	timeout  = 30 * time.Second
	interval = 100 * time.Millisecond
	// tlsSecret is the Ingress TLS Secret the operator is configured with: the
	// Secret in every tenant namespace that the tenant's Ingress serves.
	tlsSecret = "hooks-tls"
	// operatorNamespace is the operator's own namespace, where tenants' data keys live.
	operatorNamespace = "omniflow-system"
)

var (
	scheme  = testenv.Scheme()
	admin   client.Client
	restCfg *rest.Config
	clock   = clocktesting.NewFakeClock(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	ctx     = context.Background()
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	env, err := testenv.Start(scheme)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	restCfg, admin = env.Config, env.Client
	if _, err := testenv.InstallPolicies(ctx, admin); err != nil {
		fmt.Fprintf(os.Stderr, "install the shipped admission policies: %v\n", err)
		return 1
	}
	// The editor ClusterRole that config/default aggregates into the built-in
	// edit role.
	if _, err := testenv.ApplyDefault(ctx, admin, testenv.IsEditorRole); err != nil {
		fmt.Fprintf(os.Stderr, "install the shipped editor role: %v\n", err)
		return 1
	}
	// The operator's own namespace, where tenants' data keys live.
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		fmt.Fprintf(os.Stderr, "create the operator's namespace: %v\n", err)
		return 1
	}
	stop, err := testenv.StartOperator(restCfg, scheme, controllers.Options{
		Worker:    controllers.WorkerConfig{Image: "example.test/worker:test"},
		Route:     controllers.RouteConfig{IngressHost: "hooks.example.test", IngressTLSSecret: tlsSecret},
		Clock:     clock,
		Sweep:     controllers.SweepConfig{Interval: -1},
		Namespace: operatorNamespace,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start the operator: %v\n", err)
		return 1
	}
	defer stop()
	if err := waitForPolicy(); err != nil {
		fmt.Fprintf(os.Stderr, "the shipped admission policy is not enforced: %v\n", err)
		return 1
	}
	return m.Run()
}

// waitForPolicy waits until the API server enforces the worker policy: a
// policy takes effect a moment after it is created. It probes as the worker of
// a tenant namespace of its own, under names nobody uses.
func waitForPolicy() error {
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "sec-probe"}}
	if err := admin.Create(ctx, tn); err != nil {
		return err
	}
	c, err := client.New(workerConfig(tn.NamespaceName()), client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	var failure string
	g := gomega.NewGomega(func(msg string, _ ...int) { failure = msg })
	probe := 0
	ok := g.Eventually(func() error {
		probe++
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("probe-%d", probe), Namespace: tn.NamespaceName()}}
		err := c.Create(ctx, s)
		if err != nil && strings.Contains(err.Error(), "meta-deletion-*") {
			return nil
		}
		return fmt.Errorf("probe-%d: %v", probe, err) //nolint:errorlint // err is nil when the probe Secret was created
	}, time.Minute, interval).Should(gomega.Succeed())
	if !ok {
		return fmt.Errorf("a tenant worker can still create any Secret: %s", failure)
	}
	return nil
}

// workerConfig acts as the worker ServiceAccount of ns.
func workerConfig(ns string) *rest.Config {
	cfg := rest.CopyConfig(restCfg)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":" + controllers.WorkerName,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	return cfg
}
