package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
)

// ServeConfig is the standalone worker's configuration (`ingest-worker serve`).
type ServeConfig struct {
	Listen          string
	DataDir         string
	ChannelsFile    string
	MaxBodyBytes    int64
	ReloadInterval  time.Duration
	ShutdownTimeout time.Duration
	// Reload forces a channels file reload (SIGHUP).
	Reload <-chan struct{}
	// VerifyOnly runs the benchmark baseline: no store, signature check only.
	VerifyOnly bool
	Log        logr.Logger
}

// Serve runs the standalone worker until ctx ends, then shuts down gracefully: it stops
// accepting connections, lets in-flight deliveries finish (each waits for its commit),
// drains the store's queue and closes it.
func Serve(ctx context.Context, cfg ServeConfig) error {
	log := cfg.Log
	reg := channels.NewRegistry()
	src := &channels.FileSource{Path: cfg.ChannelsFile, Registry: reg, Log: log, Interval: cfg.ReloadInterval, Trigger: cfg.Reload}
	file, err := src.Load()
	if err != nil {
		return fmt.Errorf("load channels: %w", err)
	}
	log = log.WithValues("tenant", file.Tenant)
	metrics := NewMetrics()
	srv := NewServer(Options{Registry: reg, Metrics: metrics, Log: log, MaxBodyBytes: cfg.MaxBodyBytes, VerifyOnly: cfg.VerifyOnly})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	httpSrv := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	log.Info("Serving", "addr", ln.Addr().String(), "channels", len(reg.Names()), "verifyOnly", cfg.VerifyOnly)

	// Health answers from the first moment; readiness waits for the store.
	var st *sqlite.Store
	if !cfg.VerifyOnly {
		if st, err = sqlite.Open(cfg.DataDir, sqlite.Options{Observer: metrics}); err != nil {
			_ = httpSrv.Close()
			return fmt.Errorf("open store: %w", err)
		}
		srv.SetStore(st)
	}
	log.Info("Ready", "store", st != nil)
	reloadCtx, stopReload := context.WithCancel(ctx)
	defer stopReload()
	go src.Run(reloadCtx)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if st != nil {
			_ = st.Close()
		}
		return fmt.Errorf("http server: %w", err)
	}
	log.Info("Shutting down")
	srv.SetStopping()
	timeout := cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var errs []error
	if err := httpSrv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if st != nil {
		if err := st.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("Stopped cleanly")
	return nil
}
