package controllers_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// The suite runs the real manager with the operator's controllers against a
// real kube-apiserver and etcd (envtest).
var (
	scheme    = testenv.Scheme()
	k8s       client.Client // the test's own client: its writes are not counted
	restCfg   *rest.Config  // admin config of the envtest API server
	suiteEnv  *testenv.Env
	mgrWrites = &writeCounter{}
)

const testWorkerImage = "example.test/omniflow/ingest-worker:test"

// writeCounter counts the write requests the manager sends to the API
// server, to prove that an unchanged tenant costs no writes.
type writeCounter struct {
	mu    sync.Mutex
	n     int
	paths []string
}

func (w *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		switch req.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
			w.mu.Lock()
			w.n++
			w.paths = append(w.paths, req.Method+" "+req.URL.Path)
			w.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

func (w *writeCounter) snapshot() (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, append([]string(nil), w.paths...)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	env, err := testenv.Start(scheme)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop envtest: %v\n", err)
		}
	}()
	cfg := env.Config
	restCfg, k8s, suiteEnv = cfg, env.Client, env
	defer func() {
		if stopKCM != nil {
			stopKCM()
		}
	}()

	// The operator's own namespace: MetaApps' Secrets and front doors.
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		fmt.Fprintf(os.Stderr, "create the operator namespace: %v\n", err)
		return 1
	}
	mgrCfg := rest.CopyConfig(cfg)
	mgrCfg.Wrap(mgrWrites.wrap)
	stop, err := testenv.StartOperator(mgrCfg, scheme, controllers.Options{
		Worker:    controllers.WorkerConfig{Image: testWorkerImage, DefaultStorageClass: "standard"},
		Namespace: operatorNamespace,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start the operator: %v\n", err)
		return 1
	}
	defer stop()
	return m.Run()
}

// operatorNamespace is the operator's own namespace in the suite.
const operatorNamespace = "omniflow-system"

const (
	timeout  = 20 * time.Second
	interval = 100 * time.Millisecond
)
