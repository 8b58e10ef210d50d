// Package health_test drives the real operator against a real API server
// (envtest, with kube-controller-manager for namespace deletion and volume
// binding) through the phases and reasons of internal/healthtable, and
// computes kstatus on what it wrote with the real library.
package health_test

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
	// clock is the operator's only source of time in these tests.
	clock = clocktesting.NewFakeClock(time.Date(2026, 9, 1, 9, 0, 0, 0, time.UTC))
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	env, err := testenv.Start(scheme)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	restCfg, k8s = env.Config, env.Client
	stopKCM, err := testenv.StartControllerManager(env, os.Getenv("KUBEBUILDER_ASSETS"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "start kube-controller-manager: %v\n", err)
		return 1
	}
	defer stopKCM()
	stop, err := testenv.StartOperator(restCfg, scheme, controllers.Options{
		Worker: controllers.WorkerConfig{Image: "example.test/worker:test"},
		Clock:  clock,
		Sweep:  controllers.SweepConfig{Interval: -1},
		// Channels re-read their Secrets often: some rows need a Secret that
		// appears after the channel.
		ChannelRecheck: 2 * time.Second,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start the operator: %v\n", err)
		return 1
	}
	defer stop()
	return m.Run()
}
