// Package retention is the worker's retention loop (Tenant spec.retention): it deletes
// the records of the tenant's store that are older than the maximum age, by their own
// timestamps, once at start and then at every interval, in bounded batches that leave
// the store to ingest between them.
package retention

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Defaults of the worker's --retention-interval and --retention-batch-size.
const (
	DefaultInterval = time.Hour
	// A batch holds SQLite's single writer for its duration: about 56 µs per message
	// (with its status, file, contact check) on a 2-core machine, so 50 (about 3 ms)
	// keep a delivery's wait behind one batch near its own p99 (docs/erasure-at-scale.md).
	DefaultBatchSize = 50
)

// Config is the policy the worker applies.
type Config struct {
	// MaxAge: records older than this are deleted; zero turns retention off.
	MaxAge time.Duration
	// Interval between runs; the first run is at start.
	Interval time.Duration
	// BatchSize is the store.PruneRequest limit of each batch.
	BatchSize int
	// Reporter, if set, receives every run's report (in a cluster: the worker's
	// report ConfigMap, which the operator copies into the Tenant's status).
	Reporter Reporter
	// Clock is injected by tests; nil means the real clock.
	Clock clock.WithTicker
}

// Validate refuses a policy the loop cannot run, naming the flag.
func (c Config) Validate() error {
	switch {
	case c.MaxAge < 0:
		return fmt.Errorf("--retention-max-age %s: must not be negative", c.MaxAge)
	case c.MaxAge > 0 && c.Interval <= 0:
		return fmt.Errorf("--retention-interval %s: must be positive", c.Interval)
	case c.MaxAge > 0 && c.BatchSize <= 0:
		return fmt.Errorf("--retention-batch-size %d: must be positive", c.BatchSize)
	}
	return nil
}

// Report is one run's outcome. It holds counts and times only, never a record.
type Report struct {
	MaxAge   time.Duration
	Interval time.Duration
	// StartedAt is the run's start on the loop's clock; the cutoff is StartedAt - MaxAge.
	StartedAt time.Time
	Duration  time.Duration
	Pruned    store.Counts
	// Err is why the run stopped early; what it deleted before is in Pruned.
	Err error
}

// Cutoff is the time before which the run deleted records.
func (r Report) Cutoff() time.Time { return r.StartedAt.Add(-r.MaxAge) }

// Reporter publishes run reports.
type Reporter interface {
	Report(ctx context.Context, r Report) error
}

// Runner runs retention on one store.
type Runner struct {
	Config
	Store   store.Store
	Metrics *Metrics // nil: no metrics
	Log     logr.Logger
}

func (r *Runner) clock() clock.WithTicker {
	if r.Clock == nil {
		return clock.RealClock{}
	}
	return r.Clock
}

// Run runs retention at once and then every Interval until ctx ends. A failed run is
// logged, counted and reported, and the next one starts at the next tick: every run
// starts from what is stored, so nothing is lost by waiting. The guarantee: a record is
// deleted at most MaxAge + Interval (plus the duration of one run) after its timestamp.
func (r *Runner) Run(ctx context.Context) {
	if r.Metrics != nil {
		r.Metrics.policy(r.MaxAge)
	}
	ticker := r.clock().NewTicker(r.Interval)
	defer ticker.Stop()
	for {
		r.RunOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		}
	}
}

// RunOnce deletes, batch after batch, everything older than MaxAge at the clock's now.
func (r *Runner) RunOnce(ctx context.Context) Report {
	clk := r.clock()
	rep := Report{MaxAge: r.MaxAge, Interval: r.Interval, StartedAt: clk.Now()}
	req := store.PruneRequest{Before: rep.Cutoff(), Limit: r.BatchSize}
	for {
		p, err := r.Store.Prune(ctx, req)
		if err != nil {
			rep.Err = err
			break
		}
		rep.Pruned.Add(p.Counts)
		if r.Metrics != nil {
			r.Metrics.pruned(p.Counts)
		}
		if !p.More {
			break
		}
		// Each batch went through the store's queue behind the deliveries waiting
		// there; the next one queues behind those that arrived meanwhile.
		if err := ctx.Err(); err != nil {
			rep.Err = err
			break
		}
	}
	rep.Duration = clk.Since(rep.StartedAt)
	if ctx.Err() != nil {
		return rep // stopping: not a failure, and nobody to report to
	}
	if r.Metrics != nil {
		r.Metrics.run(rep)
	}
	log := r.Log.WithValues("cutoff", rep.Cutoff(), "messages", rep.Pruned.Messages, "statuses", rep.Pruned.Statuses,
		"files", rep.Pruned.Files, "fileBytes", rep.Pruned.FileBytes, "contacts", rep.Pruned.Contacts, "duration", rep.Duration)
	if rep.Err != nil {
		log.Error(rep.Err, "Retention run failed; retrying at the next interval")
	} else {
		log.Info("Retention run complete")
	}
	if r.Reporter != nil {
		if err := r.Reporter.Report(ctx, rep); err != nil && ctx.Err() == nil {
			// The data is pruned either way; only the Tenant's status lags.
			r.Log.Error(err, "Reporting the retention run failed")
			if r.Metrics != nil {
				r.Metrics.reportFailed()
			}
		}
	}
	return rep
}
