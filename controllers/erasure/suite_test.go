package erasure_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// orphanGrace is the operator's grace period for orphans in these tests.
const orphanGrace = 48 * time.Hour

var (
	scheme  = testenv.Scheme()
	k8s     client.Client
	restCfg *rest.Config
	// clock is the operator's only source of time in these tests.
	clock = clocktesting.NewFakeClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
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
	assets := os.Getenv("KUBEBUILDER_ASSETS")

	stopKCM, err := testenv.StartControllerManager(env, assets)
	if err != nil {
		fmt.Fprintf(os.Stderr, "start kube-controller-manager: %v\n", err)
		return 1
	}
	defer stopKCM()
	return m.Run()
}

// operator is one run of the operator's manager; tests stop and start it to
// prove that schedules and half-done erasures survive restarts.
type operator struct {
	cancel context.CancelFunc
	done   chan error
}

func startOperator(t *testing.T) *operator {
	t.Helper()
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(),
		Controller:             ctrlConfig(),
	})
	if err != nil {
		t.Fatalf("manager: %v", err)
	}
	if err := controllers.SetupAll(mgr, controllers.Options{
		Worker: controllers.WorkerConfig{Image: "example.test/worker:test"},
		Clock:  clock,
		Sweep:  controllers.SweepConfig{Interval: 500 * time.Millisecond, GracePeriod: orphanGrace},
	}); err != nil {
		t.Fatalf("setup: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	op := &operator{cancel: cancel, done: make(chan error, 1)}
	go func() { op.done <- mgr.Start(ctx) }()
	t.Cleanup(op.stop)
	return op
}

func (o *operator) stop() {
	if o.cancel == nil {
		return
	}
	o.cancel()
	<-o.done
	o.cancel = nil
}

// ctrlConfig lets each test start a fresh manager in the same process.
func ctrlConfig() ctrlconfig.Controller {
	return ctrlconfig.Controller{SkipNameValidation: ptr.To(true)}
}
