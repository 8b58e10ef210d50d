package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/mediafetch"
	"github.com/omniflowcrm/omniflow-operator/internal/reseal"
	"github.com/omniflowcrm/omniflow-operator/internal/retention"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
)

// ChannelSource keeps the worker's channel registry current: the standalone channels file
// (channels.FileSource) or, in a cluster, the watcher of the namespace's MetaChannels and
// their Secrets (clusterchannels.Watcher). Run calls synced once the registry holds the
// initial channels, then keeps them current until ctx ends; an error is fatal to the worker.
type ChannelSource interface {
	Run(ctx context.Context, synced func()) error
}

// ServeConfig is the worker's configuration (`ingest-worker serve`).
type ServeConfig struct {
	Listen string
	// Listener, when set, is served instead of listening on Listen (tests pass one bound
	// to 127.0.0.1:0 and learn its address).
	Listener net.Listener
	// DataDir is the SQLite store's directory; unused when PostgresDSN is set.
	DataDir string
	// PostgresDSN selects the PostgreSQL store: the tenant's database, shared by all
	// replicas of its worker. It holds a password: it comes from the environment,
	// never from a flag, and is never logged.
	PostgresDSN     string
	MaxBodyBytes    int64
	ShutdownTimeout time.Duration
	// Tenant is the worker's own tenant: webhooks are also served under /t/<Tenant>/.
	Tenant string
	// Registry is what Source feeds and the HTTP handlers read.
	Registry *channels.Registry
	Source   ChannelSource
	// ForwardKey is the tenant's forwarding credential (forward.TenantKey): the worker
	// then accepts the parts a webhook front door forwards. Empty: it accepts none.
	ForwardKey []byte
	// VerifyOnly runs the benchmark baseline: no store, signature check only.
	VerifyOnly bool
	// Deletions serves Meta's data-deletion callback and status page (in a cluster);
	// nil in standalone mode, where both answer 501.
	Deletions *subjecterasure.Desk
	// PublicBaseURL is the base of the status URL the callback answers; empty derives
	// it from each request.
	PublicBaseURL string
	// Offboard takes a channel out of service on Meta's account removal notices (in a
	// cluster: the watcher's Offboard); nil standalone.
	Offboard func(channel, event string)
	// Tasks run in the background once the store is open and the channels
	// are loaded (in a cluster: carrying out DeletionRequests). They get the
	// store and must return when ctx ends; the store closes only after.
	Tasks []func(ctx context.Context, st store.Store)
	// Retention, when its MaxAge is set, prunes the store by age: once the store is
	// open and the channels are loaded, then at every interval (retention.Runner).
	Retention retention.Config
	// MediaFetch turns on fetching shared files with Media's limits (mediafetch): once
	// the store is open and the channels are loaded, woken by every commit that stored
	// new files. Serve fills in the store, the channels, the metrics and the log.
	MediaFetch bool
	Media      mediafetch.Config
	// DataKeys is the tenant's key ring: the store seals what it stores under it
	// (docs/encryption.md). Nil stores in clear (standalone and development only).
	DataKeys datakey.Source
	// Reseal configures the encryption pass that runs while DataKeys is set: it
	// brings what was stored in clear, or under an older key version, under the
	// active one; zero fields take the defaults. Serve fills in the store, the
	// metrics and the log.
	Reseal reseal.Config
	Log    logr.Logger
}

// OpenStore opens the store a worker configuration names: PostgreSQL when postgresDSN
// is set, else SQLite in dataDir; read-only for export. metrics, if not nil, observes
// every commit. keys, if not nil, seal what is stored (docs/encryption.md); nil keeps it
// in clear.
func OpenStore(ctx context.Context, dataDir, postgresDSN string, readOnly bool, metrics *Metrics, keys *store.Keys) (store.Store, error) {
	if postgresDSN != "" {
		opts := postgres.Options{ReadOnly: readOnly, Keys: keys}
		if metrics != nil {
			opts.Observer = metrics
		}
		st, err := postgres.Open(ctx, postgresDSN, opts)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	opts := sqlite.Options{ReadOnly: readOnly, Keys: keys}
	if metrics != nil {
		opts.Observer = metrics
	}
	if hold := os.Getenv(EnvTestingHoldWALSync); hold != "" {
		opts.BeforeWALSync = holdWALSync(hold)
	}
	st, err := sqlite.Open(dataDir, opts)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// EnvTestingHoldWALSync is a failpoint for crash tests, never set in production: it
// names a file, and from the moment that file exists the SQLite store holds every WAL
// sync forever, so groups are still committed but none is answered (see
// internal/store/sqlite/walsync.go). cmd/ingest-worker's tests kill the worker in that
// state: between a group's COMMIT and its sync.
const EnvTestingHoldWALSync = "OMNIFLOW_TESTING_HOLD_WAL_SYNC"

func holdWALSync(path string) func() {
	return func() {
		if _, err := os.Stat(path); err == nil { //nolint:gosec // G703: a test's own file, named by the test's environment
			select {} // until the process is killed
		}
	}
}

// Serve runs the worker until ctx ends, then shuts down gracefully: it stops accepting
// connections, lets in-flight deliveries finish (each waits for its commit), drains the
// store's queue and closes it. Health answers at once; readiness waits until the store is
// open and the channel source has synced, so that no traffic is routed to a worker that
// would answer 404 for channels it simply has not loaded yet.
func Serve(ctx context.Context, cfg ServeConfig) error {
	if cfg.Registry == nil || cfg.Source == nil {
		return errors.New("serve: a channel registry and source are required")
	}
	if err := cfg.Retention.Validate(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log := cfg.Log.WithValues("tenant", cfg.Tenant)
	metrics := NewMetrics()
	keys := store.NewKeys(cfg.DataKeys)
	if !cfg.VerifyOnly {
		if err := logEncryption(log, cfg.DataKeys); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		if keys.Enabled() {
			cfg.Reseal = cfg.Reseal.WithDefaults()
			if err := cfg.Reseal.Validate(); err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			cfg.Tasks = append(cfg.Tasks[:len(cfg.Tasks):len(cfg.Tasks)], resealTask(cfg.Reseal, metrics, log))
		}
	}
	if cfg.Retention.MaxAge > 0 && !cfg.VerifyOnly {
		cfg.Tasks = append(cfg.Tasks[:len(cfg.Tasks):len(cfg.Tasks)], retentionTask(cfg.Retention, metrics, log))
	}
	srv := NewServer(Options{Registry: cfg.Registry, Metrics: metrics, Log: log, MaxBodyBytes: cfg.MaxBodyBytes,
		Tenant: cfg.Tenant, VerifyOnly: cfg.VerifyOnly, Deletions: cfg.Deletions, PublicBaseURL: cfg.PublicBaseURL, Offboard: cfg.Offboard,
		ForwardKey: cfg.ForwardKey})
	if cfg.MediaFetch && !cfg.VerifyOnly {
		cfg.Tasks = append(cfg.Tasks[:len(cfg.Tasks):len(cfg.Tasks)], mediaTask(cfg, srv, metrics, log))
	}

	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
	}
	httpSrv := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	log.Info("Serving", "addr", ln.Addr().String(), "verifyOnly", cfg.VerifyOnly)

	var st store.Store
	if !cfg.VerifyOnly {
		var err error
		if st, err = OpenStore(ctx, cfg.DataDir, cfg.PostgresDSN, false, metrics, keys); err != nil {
			_ = httpSrv.Close()
			return fmt.Errorf("open store: %w", err)
		}
		if err := CheckKey(ctx, st); err != nil {
			_ = httpSrv.Close()
			return errors.Join(err, st.Close())
		}
	}
	closeStore := func() error {
		if st == nil {
			return nil
		}
		if err := st.Close(); err != nil {
			return fmt.Errorf("close store: %w", err)
		}
		return nil
	}

	srcCtx, stopSource := context.WithCancel(ctx)
	defer stopSource()
	synced := make(chan struct{})
	srcErr := make(chan error, 1)
	var syncOnce sync.Once
	go func() {
		srcErr <- cfg.Source.Run(srcCtx, func() { syncOnce.Do(func() { close(synced) }) })
	}()

	taskCtx, stopTasks := context.WithCancel(ctx)
	defer stopTasks()
	var tasks sync.WaitGroup
	// A task must never see a closed store: stop and wait for them first.
	closeStore = func(closeStore func() error) func() error {
		return func() error {
			stopTasks()
			tasks.Wait()
			return closeStore()
		}
	}(closeStore)

	// Not ready until the channels are in: wait for the source, or for anything fatal.
	select {
	case <-synced:
		if st != nil {
			srv.SetStore(st)
			for _, task := range cfg.Tasks {
				tasks.Add(1)
				go func() { defer tasks.Done(); task(taskCtx, st) }()
			}
		}
		log.Info("Ready", "store", st != nil, "channels", len(cfg.Registry.Names()))
	case <-ctx.Done():
	case err := <-srcErr:
		_ = httpSrv.Close()
		return errors.Join(fmt.Errorf("channel source: %w", err), closeStore())
	case err := <-serveErr:
		stopSource()
		return errors.Join(fmt.Errorf("http server: %w", err), closeStore())
	}

	var fatal error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		stopSource()
		return errors.Join(fmt.Errorf("http server: %w", err), closeStore())
	case err := <-srcErr:
		// The registry can no longer be kept current (secrets could rotate unseen): stop
		// like on SIGTERM, so that in-flight deliveries still commit, and report it. A
		// source that returned because ctx ended raced the Done case above: not a failure.
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("stopped")
			}
			fatal = fmt.Errorf("channel source: %w", err)
			log.Error(fatal, "Channel source failed")
		}
	}
	log.Info("Shutting down")
	srv.SetStopping()
	timeout := cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	errs := []error{fatal}
	if err := httpSrv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	errs = append(errs, closeStore())
	stopSource()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("Stopped cleanly")
	return nil
}

// retentionTask runs the retention loop on the worker's store, with its metrics on the
// worker's registry.
func retentionTask(cfg retention.Config, metrics *Metrics, log logr.Logger) func(context.Context, store.Store) {
	m := retention.NewMetrics(metrics.Registry)
	return func(ctx context.Context, st store.Store) {
		(&retention.Runner{Config: cfg, Store: st, Metrics: m, Log: log.WithName("retention")}).Run(ctx)
	}
}

// mediaTask runs the media fetcher on the worker's store, woken by the server after each
// commit that stored new files, with its metrics on the worker's registry.
func mediaTask(cfg ServeConfig, srv *Server, metrics *Metrics, log logr.Logger) func(context.Context, store.Store) {
	mc := cfg.Media
	if mc.Clock == nil {
		mc.Clock = clock.RealClock{}
	}
	mc.Channels, mc.Log, mc.Busy = cfg.Registry, log.WithName("media"), srv.Busy
	return func(ctx context.Context, st store.Store) {
		fs, ok := st.(store.FileStore)
		if !ok {
			log.Info("Media fetching unavailable: this store keeps no file bytes; files stay metadata only")
			return
		}
		mc.Store = fs
		mc.Metrics = mediafetch.NewMetrics(metrics.Registry, mc.Clock.Now)
		f, err := mediafetch.New(mc)
		if err != nil {
			log.Error(err, "Media fetching not started")
			return
		}
		srv.SetFilesCommitted(f.Notify)
		f.Run(ctx)
	}
}
