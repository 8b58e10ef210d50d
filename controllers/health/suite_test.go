// Package health_test drives the real operator against a real API server
// (envtest, with kube-controller-manager for namespace deletion and volume
// binding) through the phases and reasons of internal/healthtable, and
// computes kstatus on what it wrote with the real library.
package health_test

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

var (
	scheme  = testenv.Scheme()
	k8s     client.Client
	restCfg *rest.Config
	// clock is the operator's only source of time in these tests.
	clock = clocktesting.NewFakeClock(time.Date(2026, 9, 1, 9, 0, 0, 0, time.UTC))
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

// operatorNamespace is the operator's own namespace: MetaApps' Secrets and front doors.
const operatorNamespace = "omniflow-system"

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
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		fmt.Fprintf(os.Stderr, "create the operator namespace: %v\n", err)
		return 1
	}
	stop, err := testenv.StartOperator(restCfg, scheme, controllers.Options{
		Namespace: operatorNamespace,
		Worker:    controllers.WorkerConfig{Image: "example.test/worker:test"},
		Clock:     clock,
		Sweep:     controllers.SweepConfig{Interval: -1},
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
