// Package reseal is the worker's background encryption pass (docs/encryption.md): it
// brings every record of the tenant's store under the active key version, in small
// batches that leave the store to deliveries between them: after start, after every
// change of the key ring (a rotation), and at every interval while the store is not
// fully encrypted. The store keeps the pass's position (store.Resealer), so a pass
// cut short by a stop or a crash resumes where it was.
package reseal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Defaults of the worker's --reseal-batch-size, --reseal-pause and --reseal-interval.
const (
	// A batch is one writer transaction: 256 records re-sealed (an AES-GCM open and
	// seal each, about 1 µs) and rewritten hold the writer for a few milliseconds,
	// about one group commit.
	DefaultBatchSize = 256
	// DefaultPause between two batches leaves the writer to the deliveries that
	// queued meanwhile: at most one batch in ten of the writer's time goes to the pass.
	DefaultPause = 50 * time.Millisecond
	// DefaultInterval is how often the pass checks the store when nothing woke it: a
	// rotation the worker did not hear of, or a pass that failed, is taken up then.
	DefaultInterval = 5 * time.Minute
)

// Config is how the pass runs.
type Config struct {
	// BatchSize is the limit of each Reseal call.
	BatchSize int
	// Pause is the wait between two batches; zero runs them back to back.
	Pause time.Duration
	// Interval is how often the store's state is checked when nothing wakes the loop.
	Interval time.Duration
	// Changed wakes the loop when the key ring changes (clusterkey.Watcher.Changed);
	// nil: a rotation is taken up at the next Interval.
	Changed <-chan struct{}
	// Reporter, if set, receives the store's encryption state whenever it differs
	// from the last one reported (in a cluster: the worker's report ConfigMap).
	Reporter Reporter
	// Clock is injected by tests; nil means the real clock.
	Clock clock.WithTicker
}

// WithDefaults fills in the defaults of the fields left zero.
func (c Config) WithDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	return c
}

// Validate refuses a configuration the loop cannot run, naming the flag.
func (c Config) Validate() error {
	switch {
	case c.BatchSize <= 0:
		return fmt.Errorf("--reseal-batch-size %d: must be positive", c.BatchSize)
	case c.Pause < 0:
		return fmt.Errorf("--reseal-pause %s: must not be negative", c.Pause)
	case c.Interval <= 0:
		return fmt.Errorf("--reseal-interval %s: must be positive", c.Interval)
	}
	return nil
}

// Reporter publishes the store's encryption state.
type Reporter interface {
	Report(ctx context.Context, s store.EncryptionState) error
}

// Runner runs the pass on one store.
type Runner struct {
	Config
	Store   store.Resealer
	Metrics *Metrics // nil: no metrics
	Log     logr.Logger

	reported *store.EncryptionState
}

func (r *Runner) clock() clock.WithTicker {
	if r.Clock == nil {
		return clock.RealClock{}
	}
	return r.Clock
}

// Run runs a pass at once, then whenever the ring changes or the interval passes,
// until ctx ends.
func (r *Runner) Run(ctx context.Context) {
	ticker := r.clock().NewTicker(r.Interval)
	defer ticker.Stop()
	for {
		_, _ = r.RunOnce(ctx) // a failure is logged and counted there; the next tick retries
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		case <-r.Changed:
		}
	}
}

// RunOnce brings the store under the active key version, batch after batch, unless
// it already is, and reports the state it reached. It returns that state, and the
// error that cut the pass short; when ctx ended, ctx's error, neither logged nor
// counted: stopping is not a failure.
func (r *Runner) RunOnce(ctx context.Context) (store.EncryptionState, error) {
	state, resealed, err := r.pass(ctx)
	if ctx.Err() != nil {
		return state, ctx.Err()
	}
	if r.Metrics != nil {
		r.Metrics.observe(state, err)
	}
	if err != nil {
		// The error names the table and the reason (key unavailable, a record that
		// does not authenticate), never a record's content.
		r.Log.Error(err, "Encryption pass stopped; retrying at the next interval or key change",
			"resealed", resealed, "activeVersion", state.ActiveVersion, "sealedVersion", state.SealedVersion)
		return state, err
	}
	if resealed > 0 || (r.reported != nil && !r.reported.FullyEncrypted() && state.FullyEncrypted()) {
		r.Log.Info("Encryption pass complete", "resealed", resealed, "keyVersion", state.ActiveVersion,
			"fullyEncrypted", state.FullyEncrypted())
	}
	r.report(ctx, state)
	return state, nil
}

// pass runs the batches; it returns the state the store reports at its end.
func (r *Runner) pass(ctx context.Context) (store.EncryptionState, int, error) {
	state, err := r.Store.EncryptionState(ctx)
	if err != nil {
		return state, 0, fmt.Errorf("read encryption state: %w", err)
	}
	if !state.Encrypts || state.FullyEncrypted() {
		return state, 0, nil
	}
	if r.Metrics != nil {
		r.Metrics.pending.Set(1)
	}
	r.Log.Info("Encryption pass started", "activeVersion", state.ActiveVersion, "sealedVersion", state.SealedVersion)
	// Said before the pass, which may take a while: the status then shows the
	// tenant as not fully encrypted under its new key version until it completes.
	r.report(ctx, state)
	resealed := 0
	for {
		n, done, err := r.Store.Reseal(ctx, r.BatchSize)
		resealed += n
		if r.Metrics != nil {
			r.Metrics.resealed.Add(float64(n))
		}
		if err != nil {
			return state, resealed, fmt.Errorf("reseal: %w", err)
		}
		if done {
			break
		}
		if err := r.wait(ctx); err != nil {
			return state, resealed, err
		}
	}
	after, err := r.Store.EncryptionState(ctx)
	if err != nil {
		return state, resealed, fmt.Errorf("read encryption state: %w", err)
	}
	return after, resealed, nil
}

// wait yields the store to deliveries between two batches.
func (r *Runner) wait(ctx context.Context) error {
	if r.Pause <= 0 {
		return ctx.Err()
	}
	t := r.clock().NewTimer(r.Pause)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// report publishes state if it is not what was last published: an idle worker
// writes nothing.
func (r *Runner) report(ctx context.Context, state store.EncryptionState) {
	if r.Reporter == nil || (r.reported != nil && *r.reported == state) {
		return
	}
	if err := r.Reporter.Report(ctx, state); err != nil {
		if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			// The data is sealed either way; only the Tenant's status lags, and the
			// next pass reports again.
			r.Log.Error(err, "Reporting the encryption state failed")
		}
		return
	}
	r.reported = &state
}
