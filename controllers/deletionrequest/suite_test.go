// Package deletionrequest_test runs the operator's DeletionRequest
// controller against a real API server with a fake clock, playing the
// worker's part (it reports completion in status) by hand.
package deletionrequest_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

var (
	scheme = testenv.Scheme()
	k8s    client.Client
	clock  = clocktesting.NewFakeClock(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	env, err := testenv.Start(scheme)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	cfg := env.Config
	k8s = env.Client
	stop, err := testenv.StartOperator(cfg, scheme, controllers.Options{
		Worker: controllers.WorkerConfig{Image: "example.test/worker:test"},
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
