// Package httproute_test runs the operator with --route=httproute against a real API
// server that serves the Gateway API's CRDs, playing the Gateway controller's part (it
// writes the routes' status) by hand.
package httproute_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

var (
	scheme = testenv.Scheme()
	k8s    client.Client
	route  = controllers.RouteConfig{
		Kind:            controllers.RouteHTTPRoute,
		Gateway:         "infra/public",
		GatewaySection:  "https",
		GatewayHostname: "hooks.example.com",
	}
)

const (
	operatorNamespace = "omniflow-system"
	timeout           = 20 * time.Second
	interval          = 100 * time.Millisecond
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	gatewayCRDs, err := testenv.GatewayAPICRDDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env, err := testenv.Start(scheme, gatewayCRDs)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	k8s = env.Client
	// The operator's own namespace: MetaApps' Secrets and front doors.
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		fmt.Fprintf(os.Stderr, "create the operator namespace: %v\n", err)
		return 1
	}
	stop, err := testenv.StartOperator(env.Config, scheme, controllers.Options{
		Worker:    controllers.WorkerConfig{Image: "example.test/worker:test"},
		Route:     route,
		Sweep:     controllers.SweepConfig{Interval: -1},
		Namespace: operatorNamespace,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start the operator: %v\n", err)
		return 1
	}
	defer stop()
	return m.Run()
}
