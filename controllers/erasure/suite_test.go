package erasure_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// orphanGrace is the operator's grace period for orphans in these tests.
const orphanGrace = 48 * time.Hour

// operatorNamespace is the operator's own namespace in these tests.
const operatorNamespace = "omniflow-system"

var (
	scheme = testenv.Scheme()
	k8s    client.Client
	// asOperator writes as the operator does (its ServiceAccount), for what
	// only the operator may write: the marks on namespaces.
	asOperator client.Client
	restCfg    *rest.Config
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
	// Every test runs under the shipped admission policies, the operator as
	// the identity they name.
	if _, err := testenv.InstallPolicies(context.Background(), k8s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if asOperator, err = client.New(testenv.AsOperator(restCfg), client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	// The operator's own namespace, where tenants' data keys live.
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

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
	stopFn func()
}

func startOperator(t *testing.T) *operator {
	t.Helper()
	stop, err := testenv.StartOperator(restCfg, scheme, controllers.Options{
		Worker:    controllers.WorkerConfig{Image: "example.test/worker:test"},
		Clock:     clock,
		Sweep:     controllers.SweepConfig{Interval: 500 * time.Millisecond, GracePeriod: orphanGrace},
		Namespace: operatorNamespace,
	})
	if err != nil {
		t.Fatalf("start the operator: %v", err)
	}
	op := &operator{stopFn: stop}
	t.Cleanup(op.stop)
	return op
}

func (o *operator) stop() {
	if o.stopFn != nil {
		o.stopFn()
		o.stopFn = nil
	}
}
