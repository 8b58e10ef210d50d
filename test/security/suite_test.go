package security_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

const (
	timeout  = 30 * time.Second
	interval = 100 * time.Millisecond
	// tlsSecret is the Ingress TLS Secret the operator is configured with: the
	// Secret in every tenant namespace that the tenant's Ingress serves.
	tlsSecret = "hooks-tls"
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
	stop, err := testenv.StartOperator(restCfg, scheme, controllers.Options{
		Worker: controllers.WorkerConfig{Image: "example.test/worker:test"},
		Route:  controllers.RouteConfig{IngressHost: "hooks.example.test", IngressTLSSecret: tlsSecret},
		Clock:  clock,
		Sweep:  controllers.SweepConfig{Interval: -1},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start the operator: %v\n", err)
		return 1
	}
	defer stop()
	return m.Run()
}
