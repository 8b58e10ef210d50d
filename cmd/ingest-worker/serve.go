package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/clusterchannels"
	"github.com/omniflowcrm/omniflow-operator/internal/clusterkey"
	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/forward"
	"github.com/omniflowcrm/omniflow-operator/internal/ingest"
	"github.com/omniflowcrm/omniflow-operator/internal/mediafetch"
	"github.com/omniflowcrm/omniflow-operator/internal/memlimit"
	"github.com/omniflowcrm/omniflow-operator/internal/reseal"
	"github.com/omniflowcrm/omniflow-operator/internal/retention"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

// Environment variables the operator's Deployment sets (controllers.WorkerArgs and
// desiredDeployment); they are the defaults of --namespace and --tenant.
const (
	envNamespace = "POD_NAMESPACE"
	envTenant    = "OMNIFLOW_TENANT"
	// envPostgresDSN holds the DSN of the PostgreSQL store (--store=postgres). An
	// environment variable, not a flag: it carries a password, and a process's flags are
	// readable by anyone on the node (/proc/<pid>/cmdline).
	envPostgresDSN = "OMNIFLOW_POSTGRES_DSN"
	// envDataKeySecret names the tenant's data key Secret, namespace/name (the default
	// of --data-key-secret; controllers.EnvDataKeySecret).
	envDataKeySecret = "OMNIFLOW_DATA_KEY_SECRET" //nolint:gosec // G101: the name of a variable that names a Secret, not a credential
)

// serveOptions are `serve`'s flags, with defaults from the environment applied.
type serveOptions struct {
	cfg            ingest.ServeConfig
	channelsFile   string
	reloadInterval time.Duration
	namespace      string
	tenant         string
	verbosity      int
	storeKind      string
	forwardKeyFile string
	dataKeySecret  string
	dataKeyFile    string
	dataKeyWait    time.Duration
}

const (
	storeSQLite   = "sqlite"
	storePostgres = "postgres"
)

// storeSelection checks --store and its companion (--data-dir, or the DSN in the
// environment) and sets *dsn for PostgreSQL.
func storeSelection(kind, dataDir string, getenv func(string) string, dsn *string) error {
	switch kind {
	case storeSQLite:
		if dataDir == "" {
			return errors.New("--data-dir is required")
		}
	case storePostgres:
		if *dsn = getenv(envPostgresDSN); *dsn == "" {
			return errors.New("--store=postgres needs the DSN of the tenant's database in $" + envPostgresDSN)
		}
	default:
		return fmt.Errorf("--store %q: want %s or %s", kind, storeSQLite, storePostgres)
	}
	return nil
}

// inCluster reports the mode: without a channels file, the channels come from the
// MetaChannels of the namespace.
func (o *serveOptions) inCluster() bool { return o.channelsFile == "" }

func parseServe(args []string, getenv func(string) string) (*serveOptions, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	o := &serveOptions{}
	fs.StringVar(&o.cfg.Listen, "listen", ":8080", "address to serve webhooks, health and metrics on")
	fs.StringVar(&o.storeKind, "store", storeSQLite, "the tenant's store: sqlite (in --data-dir) or postgres (the database named by $"+envPostgresDSN+")")
	fs.StringVar(&o.cfg.DataDir, "data-dir", "", "directory of the tenant's SQLite store (required with --store=sqlite)")
	fs.StringVar(&o.channelsFile, "channels", "", "standalone mode: YAML file naming the tenant and its channels")
	fs.StringVar(&o.namespace, "namespace", getenv(envNamespace), "in-cluster mode: the namespace whose MetaChannels are served (default $"+envNamespace+")")
	fs.StringVar(&o.tenant, "tenant", getenv(envTenant), "the worker's tenant; webhooks are also served under /t/<tenant>/ (default $"+envTenant+")")
	fs.StringVar(&o.cfg.PublicBaseURL, "public-base-url", "", "in-cluster mode: base of the status URL Meta's data-deletion callback answers, as the public sees it (e.g. https://hooks.example.com/t/acme); default: the callback request's X-Forwarded-Proto, Host and path prefix")
	fs.Int64Var(&o.cfg.MaxBodyBytes, "max-body-bytes", ingest.DefaultMaxBodyBytes, "largest delivery accepted; larger ones get 413")
	fs.DurationVar(&o.reloadInterval, "channels-reload-interval", 5*time.Second, "standalone mode: how often the channels file is checked for changes (SIGHUP reloads at once)")
	fs.DurationVar(&o.cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long SIGTERM waits for in-flight deliveries")
	fs.BoolVar(&o.cfg.VerifyOnly, "verify-only", false, "benchmark baseline: check signatures, store nothing (never in production)")
	fs.DurationVar(&o.cfg.Retention.MaxAge, "retention-max-age", 0, "delete stored messages (with their reactions, statuses, files and contacts left without any) older than this, by their own timestamps; 0 keeps everything")
	fs.DurationVar(&o.cfg.Retention.Interval, "retention-interval", retention.DefaultInterval, "how often retention runs (it also runs at start); a message is deleted at most --retention-max-age plus this after its timestamp")
	fs.IntVar(&o.cfg.Retention.BatchSize, "retention-batch-size", retention.DefaultBatchSize, "records of each kind deleted per transaction: ingest waits for at most one batch")
	fs.BoolVar(&o.cfg.MediaFetch, "media-fetch", true, "fetch shared files (media) into the store after their delivery is committed; off: nothing is downloaded and files stay pending")
	fs.Int64Var(&o.cfg.Media.MaxBytes, "media-max-bytes", mediafetch.DefaultMaxBytes, "largest shared file fetched; larger ones fail as TooLarge (checked against Meta's declared size and while streaming)")
	fs.IntVar(&o.cfg.Media.Concurrency, "media-concurrency", mediafetch.DefaultConcurrency, "shared files downloaded at once")
	fs.StringVar(&o.cfg.Media.GraphAPIVersion, "graph-api-version", mediafetch.DefaultGraphAPIVersion, "Graph API version WhatsApp media ids are resolved with")
	fs.DurationVar(&o.cfg.Media.RequestTimeout, "media-request-timeout", mediafetch.DefaultRequestTimeout, "time limit of one Graph API media lookup")
	fs.DurationVar(&o.cfg.Media.DownloadTimeout, "media-download-timeout", mediafetch.DefaultDownloadTimeout, "time limit of one file's download")
	fs.StringVar(&o.forwardKeyFile, "forward-key-file", "", "file holding this tenant's forwarding credential in hex (`frontdoor tenant-key`): the worker then accepts the parts a webhook front door forwards to "+forward.Path)
	fs.StringVar(&o.dataKeySecret, "data-key-secret", getenv(envDataKeySecret), "in-cluster mode: the tenant's data key Secret as namespace/name; the worker does not start without it (default $"+envDataKeySecret+", which the operator sets)")
	fs.StringVar(&o.dataKeyFile, "data-key-file", "", "standalone mode: file holding the tenant's data key Secret's data as JSON (kubectl get secret NAME -o jsonpath='{.data}'); without a key the store is kept in clear")
	fs.DurationVar(&o.dataKeyWait, "data-key-wait", 2*time.Minute, "how long the worker waits at start for its data key before it fails")
	fs.IntVar(&o.cfg.Reseal.BatchSize, "reseal-batch-size", reseal.DefaultBatchSize, "records the encryption pass seals or re-seals per transaction")
	fs.DurationVar(&o.cfg.Reseal.Pause, "reseal-pause", reseal.DefaultPause, "pause between two batches of the encryption pass, which leaves the store to deliveries")
	fs.DurationVar(&o.cfg.Reseal.Interval, "reseal-interval", reseal.DefaultInterval, "how often the encryption pass checks the store when no key change woke it")
	fs.IntVar(&o.verbosity, "v", 0, "log verbosity (1: one line per delivery, without personal data)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := storeSelection(o.storeKind, o.cfg.DataDir, getenv, &o.cfg.PostgresDSN); err != nil && !o.cfg.VerifyOnly {
		return nil, err
	}
	switch {
	case o.inCluster() && o.namespace == "":
		return nil, errors.New("--channels (standalone) or --namespace/$" + envNamespace + " (in a cluster) is required")
	case o.inCluster() && o.tenant == "":
		return nil, errors.New("--tenant/$" + envTenant + " is required in a cluster")
	case !o.inCluster() && o.dataKeySecret != "":
		return nil, errors.New("--data-key-secret is read from the cluster: it needs the in-cluster mode (no --channels)")
	case o.inCluster() && o.dataKeyFile != "":
		return nil, errors.New("--data-key-file is for standalone mode (--channels): in a cluster the key is the Secret --data-key-secret names")
	}
	if err := o.cfg.Reseal.Validate(); err != nil {
		return nil, err
	}
	if o.dataKeySecret != "" {
		if _, _, err := clusterkey.ParseRef(o.dataKeySecret); err != nil {
			return nil, fmt.Errorf("--data-key-secret: %w", err)
		}
	}
	if err := o.cfg.Retention.Validate(); err != nil {
		return nil, err
	}
	if err := o.cfg.Media.Validate(); err != nil && o.cfg.MediaFetch {
		return nil, err
	}
	if o.cfg.PublicBaseURL != "" {
		u, err := url.Parse(o.cfg.PublicBaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("--public-base-url %q: want an absolute http(s) URL without query or fragment", o.cfg.PublicBaseURL)
		}
	}
	return o, nil
}

func serve(args []string) error {
	o, err := parseServe(args, os.Getenv)
	if err != nil {
		return err
	}
	log := newLogger(o.verbosity)
	o.cfg.Log = log
	memlimit.Configure(log, ingest.GCPercent)
	o.cfg.Registry = channels.NewRegistry()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if o.inCluster() {
		err = clusterSource(o, log)
		if err == nil && o.dataKeySecret != "" {
			err = loadDataKey(ctx, o, log)
		}
	} else {
		err = fileSource(o, log)
		if err == nil && o.dataKeyFile != "" {
			var ring *datakey.Ring
			if ring, err = readKeyFile(o.dataKeyFile); err == nil {
				o.cfg.DataKeys = datakey.Static{R: ring}
			}
		}
	}
	if err == nil && o.forwardKeyFile != "" {
		o.cfg.ForwardKey, err = forward.ReadKeyFile(o.forwardKeyFile)
	}
	if err == nil {
		err = ingest.Serve(ctx, o.cfg)
	}
	if err != nil {
		log.Error(err, "Worker failed")
		return err
	}
	return nil
}

// fileSource loads the channels file before anything listens (a bad file fails at once)
// and reloads it on change or SIGHUP.
func fileSource(o *serveOptions, log logr.Logger) error {
	src := &channels.FileSource{Path: o.channelsFile, Registry: o.cfg.Registry, Log: log, Interval: o.reloadInterval, Trigger: hangups()}
	f, err := src.Load()
	if err != nil {
		return fmt.Errorf("load channels: %w", err)
	}
	if o.tenant != "" && o.tenant != f.Tenant {
		return fmt.Errorf("--tenant %q does not match the channels file's tenant %q", o.tenant, f.Tenant)
	}
	o.cfg.Tenant, o.cfg.Source = f.Tenant, src
	return nil
}

// clusterSource watches the namespace's MetaChannels as the pod's ServiceAccount (or the
// user of $KUBECONFIG, outside a pod).
func clusterSource(o *serveOptions, log logr.Logger) error {
	// client-go and controller-runtime log through these; without them their errors (a
	// watch refused by RBAC, say) would be lost or printed in another format.
	klog.SetLogger(log)
	ctrllog.SetLogger(log)
	signal.Ignore(syscall.SIGHUP) // nothing to reload: the cluster is watched
	rc, err := config.GetConfig()
	if err != nil {
		return fmt.Errorf("kubernetes client config: %w", err)
	}
	w, err := clusterchannels.New(clusterchannels.Config{
		RestConfig: rc, Namespace: o.namespace, Registry: o.cfg.Registry, Log: log.WithValues("tenant", o.tenant),
	})
	if err != nil {
		return err
	}
	o.cfg.Tenant, o.cfg.Source = o.tenant, w
	// Meta's account removal notices take a channel out of service.
	o.cfg.Offboard = w.Offboard
	// DeletionRequests of the namespace are carried out here: only the worker
	// reaches the tenant's store.
	c, err := ctrlclient.New(rc, ctrlclient.Options{Scheme: clusterchannels.Scheme()})
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	// Meta's data-deletion callback files its requests in the same namespace.
	o.cfg.Deletions = &subjecterasure.Desk{Client: c, Namespace: o.namespace}
	// Retention runs are reported in the ConfigMap the operator reads them from.
	o.cfg.Retention.Reporter = &workerreport.Retention{Client: c, Namespace: o.namespace}
	// So is the media fetcher's state: queue figures and channels whose token needs a human.
	o.cfg.Media.Reporter = &workerreport.MediaReporter{Client: c, Namespace: o.namespace}
	// And how far the encryption pass brought the store.
	o.cfg.Reseal.Reporter = &workerreport.EncryptionReporter{Client: c, Namespace: o.namespace}
	o.cfg.Tasks = append(o.cfg.Tasks, func(ctx context.Context, st store.Store) {
		p := &subjecterasure.Processor{
			Client: c, RestConfig: rc, Namespace: o.namespace, Store: st, Clock: clock.RealClock{},
			Log: log.WithName("deletion-requests"),
		}
		if err := p.Run(ctx); err != nil {
			log.Error(err, "Deletion requests are no longer watched")
		}
	})
	return nil
}

// loadDataKey starts the watch of the tenant's data key and waits until it is loaded.
// Without its key the worker does not start: it could only refuse deliveries or store
// them in clear, and the second must never happen. Failing at start makes the cause
// plain (the pod's log and restarts) instead.
func loadDataKey(ctx context.Context, o *serveOptions, log logr.Logger) error {
	w, err := watchDataKey(ctx, o.dataKeySecret, o.dataKeyWait, log.WithValues("tenant", o.tenant))
	if err != nil {
		return fmt.Errorf("the worker does not start without its data key: %w", err)
	}
	o.cfg.DataKeys = w
	// A rotation wakes the encryption pass at once.
	o.cfg.Reseal.Changed = w.Changed()
	return nil
}

// hangups turns SIGHUP into a non-blocking reload trigger.
func hangups() <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	return reload
}
