// Package deletionrequest_test runs the operator's DeletionRequest controller
// against a real API server with a fake clock, and the worker's real half of a
// request (subjecterasure.Processor over a real SQLite store) as the worker's
// ServiceAccount, with the Role the operator grants it.
package deletionrequest_test

import (
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

var (
	scheme  = testenv.Scheme()
	k8s     client.Client
	restCfg *rest.Config
	clock   = clocktesting.NewFakeClock(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	// stopOperator stops the running operator; restartOperator replaces it.
	stopOperator func()
)

// tlsSecret is the Ingress TLS Secret the operator is configured with.
const tlsSecret = "hooks-tls"

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	env, err := testenv.Start(scheme)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	restCfg = env.Config
	k8s = env.Client
	if err := startOperator(); err != nil {
		fmt.Fprintf(os.Stderr, "start the operator: %v\n", err)
		return 1
	}
	defer func() { stopOperator() }()
	return m.Run()
}

func startOperator() error {
	stop, err := testenv.StartOperator(restCfg, scheme, controllers.Options{
		Worker: controllers.WorkerConfig{Image: "example.test/worker:test"},
		Route:  controllers.RouteConfig{IngressHost: "hooks.example.test", IngressTLSSecret: tlsSecret},
		Clock:  clock,
		Sweep:  controllers.SweepConfig{Interval: -1},
	})
	if err != nil {
		return err
	}
	stopOperator = stop
	return nil
}

// restartOperator stops the operator and starts a new one: whatever it knew
// in memory is gone, only the API server's state remains.
func restartOperator(t *testing.T) {
	t.Helper()
	stopOperator()
	if err := startOperator(); err != nil {
		t.Fatalf("restart the operator: %v", err)
	}
}
