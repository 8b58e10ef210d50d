// Package testenv starts the real control plane the tests run against
// (kube-apiserver and etcd from envtest) with the Omniflow CRDs installed,
// the same way in every package.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"go.uber.org/zap/zapcore"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// Scheme holds the built-in types and the Omniflow API.
func Scheme() *kruntime.Scheme {
	s := kruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(platformv1.AddToScheme(s))
	return s
}

// CRDDir is config/crd/bases of this repository, wherever the test runs.
func CRDDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "config", "crd", "bases")
}

// Env is a running control plane.
type Env struct {
	*envtest.Environment
	Config *rest.Config
	// Client is an admin client; the tests' own writes go through it.
	Client client.Client
}

// Start starts kube-apiserver and etcd with the CRDs installed. It fails
// with a clear message when KUBEBUILDER_ASSETS is unset: the tests are run
// by `make test`, which builds the binaries the first time.
func Start(scheme *kruntime.Scheme) (*Env, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, " +
			"or export KUBEBUILDER_ASSETS=$(hack/setup-envtest.sh)")
	}
	SetLogger()
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{CRDDir()},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("create client: %w", err)
	}
	return &Env{Environment: env, Config: cfg, Client: c}, nil
}

// SetLogger keeps test output readable (errors only) unless TEST_VERBOSE=1.
func SetLogger() {
	lvl := zapcore.ErrorLevel
	if os.Getenv("TEST_VERBOSE") == "1" {
		lvl = zapcore.DebugLevel
	}
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(lvl)))
}
