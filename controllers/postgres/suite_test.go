// Package postgres_test proves the PostgreSQL storage backend end to end: the
// real manager against envtest (with kube-controller-manager for namespace
// deletion) and a real PostgreSQL server (pgtest), with a fake clock.
package postgres_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

var (
	scheme  = testenv.Scheme()
	k8s     client.Client
	restCfg *rest.Config
	// clock is the operator's only source of time in these tests.
	clock = clocktesting.NewFakeClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	// adminSecret is what --postgres-admin-secret names: the test server's DSN.
	adminSecret = types.NamespacedName{Namespace: "omniflow-system", Name: "postgres-admin"}
	// downSecret names a server nobody listens on.
	downSecret = types.NamespacedName{Namespace: "omniflow-system", Name: "postgres-admin-down"}
)

// orphanGrace is the operator's grace period for orphans in these tests.
const orphanGrace = 48 * time.Hour

// downDSN is a server that refuses connections (port 1 on loopback).
const downDSN = "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable"

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if err := pgtest.CheckServer(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env, err := testenv.Start(scheme)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	restCfg, k8s = env.Config, env.Client
	if _, err := testenv.InstallPolicies(context.Background(), k8s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stopKCM, err := testenv.StartControllerManager(env, os.Getenv("KUBEBUILDER_ASSETS"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "start kube-controller-manager: %v\n", err)
		return 1
	}
	defer stopKCM()
	if err := createAdminSecrets(os.Getenv(pgtest.DSNEnv)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func createAdminSecrets(dsn string) error {
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: adminSecret.Namespace}}); err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	for ref, value := range map[types.NamespacedName]string{adminSecret: dsn, downSecret: downDSN} {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name},
			Data:       map[string][]byte{"dsn": []byte(value)},
		}
		if err := k8s.Create(ctx, s); err != nil {
			return fmt.Errorf("create admin Secret %s: %w", ref, err)
		}
	}
	return nil
}

// startOperator runs the operator's manager until the test ends; admin is
// its --postgres-admin-secret (empty: the flag is not set).
func startOperator(t *testing.T, admin types.NamespacedName) (stop func()) {
	t.Helper()
	stopFn, err := testenv.StartOperator(restCfg, scheme, controllers.Options{
		Worker: controllers.WorkerConfig{Image: "example.test/worker:test"},
		Clock:  clock,
		// The suite's tests leave force-removed tenants behind, which would
		// make the sweep stand down (more than half orphaned); that guard is
		// tested in controllers/erasure.
		Sweep:    controllers.SweepConfig{Interval: 500 * time.Millisecond, GracePeriod: orphanGrace, MaxOrphanShare: 1},
		Postgres: controllers.PostgresConfig{AdminSecret: admin},
	})
	if err != nil {
		t.Fatalf("start the operator: %v", err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			stopFn()
		}
	}
	t.Cleanup(stop)
	return stop
}
