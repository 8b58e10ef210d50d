// Package testenv starts the real control plane the tests run against
// (kube-apiserver and etcd from envtest) with the Omniflow CRDs installed,
// the same way in every package.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"go.uber.org/zap/zapcore"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/omniflowcrm/omniflow-operator/controllers"
)

// Scheme holds what the operator uses (controllers.AddToScheme).
func Scheme() *kruntime.Scheme {
	s := kruntime.NewScheme()
	utilruntime.Must(controllers.AddToScheme(s))
	return s
}

// CRDDir is config/crd/bases of this repository, wherever the test runs.
func CRDDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "config", "crd", "bases")
}

// GatewayAPICRDDir is the directory of the Gateway API's standard CRDs in the
// module cache, at the version go.mod names.
func GatewayAPICRDDir() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return "", fmt.Errorf("locate sigs.k8s.io/gateway-api: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("gateway API CRDs: %w", err)
	}
	return dir, nil
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
// extraCRDDirs are installed too (e.g. GatewayAPICRDDir).
func Start(scheme *kruntime.Scheme, extraCRDDirs ...string) (*Env, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, " +
			"or export KUBEBUILDER_ASSETS=$(hack/setup-envtest.sh)")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     append([]string{CRDDir()}, extraCRDDirs...),
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
	}
	return Adopt(env)
}

// SetLogger keeps test output readable (errors only) unless TEST_VERBOSE=1.
func SetLogger() {
	lvl := zapcore.ErrorLevel
	if os.Getenv("TEST_VERBOSE") == "1" {
		lvl = zapcore.DebugLevel
	}
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(lvl)))
}

// ErasureControllers are the kube-controller-manager controllers that
// envtest lacks and erasure relies on: namespace deletion, garbage
// collection, volume binding and protection.
const ErasureControllers = "namespace,garbagecollector,persistentvolume-binder,pv-protection,pvc-protection"

// StartControllerManager runs kube-controller-manager beside the envtest API
// server with the given controllers (a comma-separated list for its
// --controllers flag; ErasureControllers when empty). stop kills it.
func StartControllerManager(env *Env, assets string, controllers ...string) (func(), error) {
	list := strings.Join(controllers, ",")
	if list == "" {
		list = ErasureControllers
	}
	user, err := env.AddUser(envtest.User{Name: "kube-controller-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("add user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	dir, err := os.MkdirTemp("", "kcm-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+path,
		"--controllers="+list,
		"--leader-elect=false",
		"--secure-port=0",
		"--concurrent-namespace-syncs=5",
		"--namespace-sync-period=5s",
		"--pvclaimbinder-sync-period=1s",
		"-v=1",
	)
	logFile, err := os.Create(filepath.Join(dir, "kcm.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logFile.Close()
		if os.Getenv("TEST_VERBOSE") == "1" {
			fmt.Fprintf(os.Stderr, "kube-controller-manager log: %s\n", logFile.Name())
			return
		}
		_ = os.RemoveAll(dir)
	}, nil
}

// OperatorUser is the identity the operator runs as when config/default
// deploys it: the namespace-marks admission policy lets only this user set
// the operator's marks on namespaces (a test in this package checks that
// the rendered policy names it).
const OperatorUser = "system:serviceaccount:omniflow-system:omniflow-controller-manager"

// AsOperator is cfg impersonating the operator's ServiceAccount (with the
// admin's powers: the tests do not prove RBAC here), so that the shipped
// admission policies see the operator as they do in a cluster.
func AsOperator(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: OperatorUser, Groups: []string{"system:masters", "system:authenticated"}}
	return c
}

// StartOperator runs the operator's manager with its controllers, set up as
// cmd/manager sets them up, until stop is called. Several may run one after
// another in one process (tests restart the operator). It runs as the
// operator's ServiceAccount (AsOperator).
func StartOperator(cfg *rest.Config, scheme *kruntime.Scheme, opts controllers.Options) (stop func(), err error) {
	mgr, err := ctrl.NewManager(AsOperator(cfg), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(opts.Route),
		Controller:             ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	if err := controllers.SetupAll(mgr, opts); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stop = func() { cancel(); <-done }
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		stop()
		return nil, errors.New("the manager's cache did not sync")
	}
	return stop, nil
}

// Adopt starts env, configured by the caller (extra API server flags, for
// instance), with the Omniflow CRDs and the Env's admin client.
func Adopt(env *envtest.Environment) (*Env, error) {
	SetLogger()
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("create client: %w", err)
	}
	return &Env{Environment: env, Config: cfg, Client: c}, nil
}
