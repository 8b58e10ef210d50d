// Command manager is the Omniflow operator: it reconciles Tenants,
// MetaChannels and DeletionRequests.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/memlimit"
)

// gcPercent is the manager's GOGC unless $GOGC is set. The heap is mostly the cache,
// which lives long; what a burst of reconciles allocates dies within its pass.
// Collecting at 50% growth instead of Go's 100% halves the headroom: 142 instead of
// about 200 MiB RSS at 1,000 tenants (docs/operator-scale.md).
const gcPercent = 50

// defaultWorkerImage is overridden at build time with -ldflags -X.
var defaultWorkerImage = "ghcr.io/omniflowcrm/omniflow-operator:latest"

func main() {
	var (
		metricsAddr, probeAddr string
		secureMetrics          bool
		enableHTTP2            bool
		leaderElect            bool
		leaderElectionNS       string
		operatorNS             string
		worker                 controllers.WorkerConfig
		route                  controllers.RouteConfig
		routeKind              string
		ingressAnnotations     keyValues
		sweep                  controllers.SweepConfig
		postgresAdminSecret    string
		maxConcurrent          int
		pprofAddr              string
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443",
		"Address of the metrics endpoint (\":8080\" for HTTP with --metrics-secure=false; \"0\" disables it).")
	flag.BoolVar(&secureMetrics, "metrics-secure", true,
		"Serve metrics over HTTPS with Kubernetes authentication and authorization.")
	flag.BoolVar(&enableHTTP2, "enable-http2", false,
		"Allow HTTP/2 on the metrics server (off by default: CVE-2023-44487, CVE-2023-39325).")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.BoolVar(&leaderElect, "leader-elect", false,
		"Elect a leader so that only one replica of the operator reconciles at a time.")
	flag.StringVar(&leaderElectionNS, "leader-election-namespace", "",
		"Namespace of the leader election Lease (default: the operator's own namespace).")
	flag.StringVar(&worker.Image, "worker-image", envOr("WORKER_IMAGE", defaultWorkerImage),
		"Image of the per-tenant ingest worker (default: $WORKER_IMAGE, which config/default sets to the manager's own image).")
	flag.StringVar(&operatorNS, "namespace", os.Getenv("POD_NAMESPACE"),
		"The operator's own namespace, where MetaApps' Secrets are read and their front doors run, and tenants' data keys are kept (default: $POD_NAMESPACE).")
	flag.StringVar(&worker.DefaultStorageClass, "default-storage-class", "",
		"StorageClass of tenant volumes when a Tenant names none (default: the cluster's default StorageClass).")
	flag.StringVar(&routeKind, "route", string(controllers.RouteIngress),
		"How Meta's webhooks reach the tenant workers: \"ingress\" (one Ingress per Active tenant), \"httproute\" (one Gateway API HTTPRoute per Active tenant, attached to --gateway) or \"none\" (route /t/<tenant>/ yourself).")
	flag.StringVar(&route.WebhookBaseURL, "webhook-base-url", "",
		"Public base URL of the webhooks, e.g. https://hooks.example.com (default: https://<--ingress-host>, or https://<--gateway-hostname> with --route=httproute); channels publish <base>/t/<tenant>/webhooks/meta/<channel>.")
	flag.StringVar(&route.IngressClass, "ingress-class", "", "ingressClassName of tenant Ingresses (default: the cluster's default IngressClass).")
	flag.StringVar(&route.IngressHost, "ingress-host", "", "Host of tenant Ingresses (default: any host).")
	flag.StringVar(&route.IngressTLSSecret, "ingress-tls-secret", "",
		"TLS Secret named by tenant Ingresses; it must exist in each tenant namespace (default: no tls section).")
	flag.Var(&ingressAnnotations, "ingress-annotation", "key=value annotation for every tenant Ingress (repeatable).")
	flag.StringVar(&route.Gateway, "gateway", "",
		"Parent Gateway of tenant HTTPRoutes as namespace/name (--route=httproute); its listener must allow routes from the tenant namespaces.")
	flag.StringVar(&route.GatewaySection, "gateway-section", "", "Listener (sectionName) of --gateway to attach tenant HTTPRoutes to (default: every listener that allows them).")
	flag.StringVar(&route.GatewayHostname, "gateway-hostname", "",
		"Hostname of tenant HTTPRoutes (default: the listener's); also the default host of --webhook-base-url with --route=httproute.")
	flag.DurationVar(&sweep.Interval, "orphan-sweep-interval", 10*time.Minute,
		"How often to look for tenant namespaces and volumes whose Tenant is gone (negative disables the sweep).")
	flag.DurationVar(&sweep.GracePeriod, "orphan-grace-period", 7*24*time.Hour,
		"How long after an orphan is found it is erased (at most 312h, so that the 14-day promise holds from discovery).")
	flag.Float64Var(&sweep.MaxOrphanShare, "orphan-max-share", 0.5,
		"Share of tenant namespaces above which orphans are not erased but alerted on (a CRD reinstall or restore).")
	flag.StringVar(&postgresAdminSecret, "postgres-admin-secret", "",
		"Secret (namespace/name) whose key dsn is the DSN of a role with CREATEDB and CREATEROLE on the shared PostgreSQL server; enables storage.backend PostgreSQL (default: PostgreSQL tenants are refused).")
	flag.IntVar(&maxConcurrent, "max-concurrent-reconciles", controllers.DefaultMaxConcurrentReconciles,
		"How many Tenants (and how many DeletionRequests) are reconciled at once; MetaChannels are always reconciled one at a time.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "0",
		"Address of the Go profiler's /debug/pprof endpoints, e.g. 127.0.0.1:6060 (default \"0\": off). Plain HTTP, unauthenticated: bind it to loopback.")
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	memlimit.Configure(log, gcPercent)
	route.Kind, route.IngressAnnotations = controllers.RouteKind(routeKind), ingressAnnotations
	opts := controllers.Options{Worker: worker, Route: route, Sweep: sweep, MaxConcurrentReconciles: maxConcurrent, Namespace: operatorNS}
	adminSecret, err := controllers.ParsePostgresAdminSecret(postgresAdminSecret)
	if err != nil {
		log.Error(err, "Invalid flag")
		os.Exit(1)
	}
	opts.Postgres.AdminSecret = adminSecret
	ep := endpoints{metrics: metricsAddr, secureMetrics: secureMetrics, http2: enableHTTP2, probe: probeAddr, pprof: pprofAddr}
	if err := run(ep, leaderElect, leaderElectionNS, opts); err != nil {
		log.Error(err, "Operator stopped")
		os.Exit(1)
	}
}

// endpoints are the manager's HTTP listeners.
type endpoints struct {
	metrics, probe, pprof string
	secureMetrics, http2  bool
}

func run(ep endpoints, leaderElect bool, leaderElectionNS string, opts controllers.Options) error {
	if err := opts.Route.Validate(); err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(controllers.AddToScheme(scheme))

	var tlsOpts []func(*tls.Config)
	if !ep.http2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{BindAddress: ep.metrics, SecureServing: ep.secureMetrics, TLSOpts: tlsOpts}
	if ep.secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOpts,
		HealthProbeBindAddress:  ep.probe,
		PprofBindAddress:        ep.pprof,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "omniflow-operator.platform.omniflowcrm.com",
		LeaderElectionNamespace: leaderElectionNS,
		// Release the lease on shutdown so that a rollout hands over at once.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controllers.CacheOptions(opts.Route),
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := controllers.SetupAll(mgr, opts); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("add ready check: %w", err)
	}
	if opts.Namespace == "" {
		// Tenants' data keys live in the operator's namespace (docs/encryption.md).
		ctrl.Log.WithName("setup").Error(nil, "The operator has no namespace of its own (--namespace, $POD_NAMESPACE): tenants get no data key, and erasure cannot destroy one")
	}
	ctrl.Log.WithName("setup").Info("Starting manager", "workerImage", opts.Worker.Image, "route", opts.Route.Kind, "webhookBaseURL", opts.Route.WebhookBaseURL,
		"postgresAdminSecret", opts.Postgres.AdminSecret.String())
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}

// keyValues is a repeatable key=value flag.
type keyValues map[string]string

func (kv *keyValues) String() string { return fmt.Sprint(map[string]string(*kv)) }

func (kv *keyValues) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	if *kv == nil {
		*kv = keyValues{}
	}
	(*kv)[k] = v
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
