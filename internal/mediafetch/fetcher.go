// Package mediafetch is the worker's downloader of shared files (media): it takes the
// pending files of the tenant's store (the durable fetch queue that Commit fills), off
// the webhook path, resolves WhatsApp media ids through the Graph API and downloads the
// bytes (WhatsApp with the channel's access token, Messenger and Instagram attachment
// URLs directly), streams them into the store checked against Meta's declared size and
// checksum, and retries transient failures with exponential backoff until a budget is
// spent. A channel whose token Meta refuses is paused, without spending attempts, until
// its token changes. The queue is the store's: a restarted worker resumes where the last
// one stopped.
package mediafetch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Defaults of the worker's flags.
const (
	DefaultMaxBytes        = 100 << 20 // WhatsApp's own limit for inbound media
	DefaultConcurrency     = 4
	DefaultRequestTimeout  = 30 * time.Second
	DefaultDownloadTimeout = 10 * time.Minute
	DefaultReportInterval  = 30 * time.Second
	// DefaultPollInterval bounds how late the fetcher notices work it was not told
	// about: a lease that ran out (a worker died mid-download), another replica's retry.
	DefaultPollInterval = time.Minute
	// DefaultMaxYield is the longest the fetcher waits for a moment without webhook
	// deliveries before it starts a download anyway.
	DefaultMaxYield = time.Second
	// yieldCheck is how often a yielding fetcher looks whether ingest is still busy.
	yieldCheck = 20 * time.Millisecond
	// tokenCheckInterval is how often a paused channel's token is compared with the
	// registry's (in memory, no request).
	tokenCheckInterval = 5 * time.Second
)

// Channels is where the fetcher finds a file's channel and its current token (the
// worker's channels.Registry, kept current from the MetaChannels and their Secrets).
type Channels interface {
	Lookup(name string) (channels.Channel, bool)
	Names() []string
}

// Config configures a Fetcher. Zero values take the defaults above.
type Config struct {
	Store    store.FileStore
	Channels Channels
	// HTTPClient makes every request; nil uses a client of the fetcher's own.
	HTTPClient      *http.Client
	GraphAPIVersion string
	// MaxBytes is the per-file limit, enforced while streaming and against the size
	// Meta declares.
	MaxBytes int64
	// Concurrency is the number of downloads at once.
	Concurrency int
	// RequestTimeout bounds a Graph API lookup; DownloadTimeout a whole download.
	RequestTimeout  time.Duration
	DownloadTimeout time.Duration
	// The retry policy: exponential backoff from RetryBase to RetryMax, at most
	// MaxAttempts attempts.
	RetryBase, RetryMax time.Duration
	MaxAttempts         int
	PollInterval        time.Duration
	// Reporter, if set, receives the media report (in a cluster: the worker's report
	// ConfigMap); it is written only when it changed, checked every ReportInterval and
	// at once when a channel is paused or resumed.
	Reporter       Reporter
	ReportInterval time.Duration
	Metrics        *Metrics // nil: not observed
	// Busy, if set, reports that the worker is answering webhook deliveries: ingest goes
	// first, and the fetcher starts no download while it is busy, for at most MaxYield at
	// a time (then one download starts, so that sustained traffic slows fetching down to
	// about one file per MaxYield but never stops it).
	Busy     func() bool
	MaxYield time.Duration
	Clock    clock.WithTicker
	Log      logr.Logger
}

func (c *Config) defaults() {
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: max(c.Concurrency, DefaultConcurrency),
			TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: DefaultRequestTimeout,
		}}
	}
	setDefault(&c.GraphAPIVersion, DefaultGraphAPIVersion)
	setDefault(&c.MaxBytes, DefaultMaxBytes)
	setDefault(&c.Concurrency, DefaultConcurrency)
	setDefault(&c.RequestTimeout, DefaultRequestTimeout)
	setDefault(&c.DownloadTimeout, DefaultDownloadTimeout)
	setDefault(&c.RetryBase, DefaultRetryBase)
	setDefault(&c.RetryMax, DefaultRetryMax)
	setDefault(&c.MaxAttempts, DefaultMaxAttempts)
	setDefault(&c.PollInterval, DefaultPollInterval)
	setDefault(&c.ReportInterval, DefaultReportInterval)
	setDefault(&c.MaxYield, DefaultMaxYield)
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// lease is how long a claim keeps a file from other claims: longer than the longest
// attempt (two lookups and a download), with a margin for the clocks of replicas that
// share a PostgreSQL store, so that only a dead fetcher's files come back.
func (c *Config) lease() time.Duration {
	return c.DownloadTimeout + 2*c.RequestTimeout + leaseMargin
}

const leaseMargin = 10 * time.Second

// Fetcher fetches the pending files of one store.
type Fetcher struct {
	cfg    Config
	policy retryPolicy
	wake   chan struct{}
	done   chan store.FileKey

	mu sync.Mutex
	// busy holds the files being fetched: a claim that returns one again (another
	// replica's lease ran out, say) is ignored.
	busy map[store.FileKey]bool
	// paused holds the channels whose token Meta refused.
	paused map[string]*pause
	// due holds the times retries were scheduled for, sorted: the loop wakes at the
	// first.
	due []time.Time
	// changed is set when the report's channel state changed.
	changed bool
	report  reportState
	// stale is set when the store's figures changed (a commit with files, an outcome).
	stale atomic.Bool
}

// pause is a channel whose token was refused: the token's hash (the token itself is not
// kept), when, and the channel's files released to the store while it waits for a new
// token (made due at once when the token changes).
type pause struct {
	token  [sha256.Size]byte
	at     time.Time
	parked map[store.FileKey]bool
}

// versionRE is the shape of a Graph API version.
var versionRE = regexp.MustCompile(`^v[0-9]{1,3}\.[0-9]{1,3}$`)

// MaxConcurrency bounds --media-concurrency: downloads share the worker's two cores'
// worth of CPU and its store's writer with ingest.
const MaxConcurrency = 64

// Validate refuses the limits the worker's flags set, naming the flag; zero values are
// refused too (New would read them as defaults, a flag never means that).
func (c *Config) Validate() error {
	switch {
	case c.MaxBytes <= 0:
		return fmt.Errorf("--media-max-bytes %d: must be positive", c.MaxBytes)
	case c.Concurrency <= 0 || c.Concurrency > MaxConcurrency:
		return fmt.Errorf("--media-concurrency %d: want 1 to %d", c.Concurrency, MaxConcurrency)
	case c.RequestTimeout <= 0:
		return fmt.Errorf("--media-request-timeout %s: must be positive", c.RequestTimeout)
	case c.DownloadTimeout <= 0:
		return fmt.Errorf("--media-download-timeout %s: must be positive", c.DownloadTimeout)
	case !versionRE.MatchString(c.GraphAPIVersion):
		return fmt.Errorf("--graph-api-version %q: want a version such as %s", c.GraphAPIVersion, DefaultGraphAPIVersion)
	}
	return nil
}

// New returns a fetcher; Run starts it.
func New(cfg Config) (*Fetcher, error) {
	cfg.defaults()
	if cfg.Store == nil || cfg.Channels == nil {
		return nil, errors.New("media fetcher: a store and channels are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("media fetcher: %w", err)
	}
	return &Fetcher{
		cfg:    cfg,
		policy: retryPolicy{base: cfg.RetryBase, max: cfg.RetryMax, maxAttempts: cfg.MaxAttempts},
		wake:   make(chan struct{}, 1),
		done:   make(chan store.FileKey, cfg.Concurrency),
		busy:   map[store.FileKey]bool{},
		paused: map[string]*pause{},
	}, nil
}

// Notify wakes the fetcher: new files were committed. It never blocks (the webhook path
// calls it after a commit).
func (f *Fetcher) Notify() {
	f.stale.Store(true)
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Run fetches until ctx ends, then waits for the downloads in flight: they end with ctx,
// and each interrupted file is released, due at once and its attempt taken back, so that
// the next fetcher takes it without waiting for its lease. The store must stay open
// until Run returns (the worker closes it only after its tasks returned, internal/ingest).
func (f *Fetcher) Run(ctx context.Context) {
	clk := f.cfg.Clock
	var wg sync.WaitGroup
	defer wg.Wait()
	reports := clk.NewTicker(f.cfg.ReportInterval)
	defer reports.Stop()
	f.publish(ctx)
	inflight := 0
	var yieldingSince time.Time
	for {
		f.resumeChangedTokens(ctx, clk.Now())
		if f.takeChanged() {
			f.publish(ctx)
		}
		now := clk.Now()
		free, yielding := f.cfg.Concurrency-inflight, false
		if free > 0 && f.cfg.Busy != nil && f.cfg.Busy() {
			free, yielding, yieldingSince = yieldTo(now, yieldingSince, f.cfg.MaxYield, free)
		} else {
			yieldingSince = time.Time{}
		}
		for _, job := range f.nextJobs(ctx, now, free) {
			inflight++
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.run(ctx, job)
				f.done <- job.Key
			}()
		}
		wait := f.wakeAfter(now)
		if yielding {
			wait = min(wait, yieldCheck)
		}
		timer := clk.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			// done has room for every download in flight: none blocks on it.
			return
		case <-f.wake:
		case <-f.done:
			inflight--
		case <-timer.C():
		case <-reports.C():
			f.publish(ctx)
		}
		timer.Stop()
		for drained := false; !drained; {
			select {
			case <-f.done:
				inflight--
			default:
				drained = true
			}
		}
	}
}

// yieldTo decides what a fetcher with free download slots starts while ingest is busy:
// nothing (yielding) until it has waited maxYield since since (zero: it starts waiting
// now), then one download, and it waits afresh.
func yieldTo(now, since time.Time, maxYield time.Duration, free int) (start int, yielding bool, newSince time.Time) {
	switch {
	case since.IsZero():
		return 0, true, now
	case now.Sub(since) < maxYield:
		return 0, true, since
	}
	return min(free, 1), true, now
}

// nextJobs claims up to free jobs to start. A WhatsApp file of a paused channel is
// released instead (parked).
func (f *Fetcher) nextJobs(ctx context.Context, now time.Time, free int) []store.FetchJob {
	if free <= 0 {
		return nil
	}
	var jobs []store.FetchJob
	f.mu.Lock()
	for len(f.due) > 0 && !f.due[0].After(now) {
		f.due = f.due[1:]
	}
	f.mu.Unlock()
	// A claim may return only files to park (a paused channel's, oldest first): claim
	// again while it does, a bounded number of times, so that other channels' files
	// are not held behind them. Parked files are released until a lease from now, so
	// the next round does not return them.
	for range maxClaimRounds {
		want := free - len(jobs)
		if want <= 0 {
			break
		}
		claimed, err := f.cfg.Store.ClaimFetches(ctx, now, want, f.cfg.lease())
		if err != nil {
			if ctx.Err() == nil {
				f.cfg.Log.Error(err, "Claiming files to fetch failed")
			}
			break
		}
		var parked []store.FetchJob
		f.mu.Lock()
		for _, job := range claimed {
			if f.busy[job.Key] {
				continue
			}
			if f.pausedFor(job) != nil {
				parked = append(parked, job)
				continue
			}
			f.busy[job.Key] = true
			jobs = append(jobs, job)
		}
		f.mu.Unlock()
		for _, job := range parked {
			f.releaseParked(ctx, job.Key, now)
		}
		f.rememberParked(ctx, parked, now)
		if len(claimed) < want {
			break // nothing more is due
		}
	}
	return jobs
}

// maxClaimRounds bounds the claims of one pass of the loop.
const maxClaimRounds = 16

// pausedFor returns the pause a WhatsApp job waits behind (its channel's token, as it is
// now, was refused), or nil. Called with mu held.
func (f *Fetcher) pausedFor(job store.FetchJob) *pause {
	p := f.paused[job.Channel]
	if p == nil || job.Key.Platform != meta.WhatsApp {
		return nil
	}
	if ch, ok := f.cfg.Channels.Lookup(job.Channel); ok && sha256.Sum256([]byte(ch.AccessToken)) != p.token {
		return nil // a new token: resumeChangedTokens lifts the pause on its next pass
	}
	return p
}

// wakeAfter is how long the loop may sleep: until the first scheduled retry, a paused
// channel's next token check, or the poll interval.
func (f *Fetcher) wakeAfter(now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.cfg.PollInterval
	if len(f.due) > 0 {
		d = min(d, f.due[0].Sub(now))
	}
	if len(f.paused) > 0 {
		d = min(d, tokenCheckInterval)
	}
	return max(d, 0)
}

// resumeChangedTokens lifts the pause of every channel whose token changed (or that
// lost its token: its files then end as NoToken), making its parked files due now.
func (f *Fetcher) resumeChangedTokens(ctx context.Context, now time.Time) {
	var due []store.FileKey
	f.mu.Lock()
	for name, p := range f.paused {
		ch, ok := f.cfg.Channels.Lookup(name)
		if !ok || sha256.Sum256([]byte(ch.AccessToken)) == p.token {
			continue
		}
		delete(f.paused, name)
		for k := range p.parked {
			due = append(due, k)
		}
		f.changed = true
		f.cfg.Log.Info("Channel's access token changed; fetching resumes", "channel", name, "files", len(p.parked))
	}
	f.mu.Unlock()
	f.makeDue(ctx, due, now)
}

// rememberParked adds released files to their channel's pause, so that they are made
// due when its token changes; a pause lifted while they were being released (the
// token changed meanwhile) makes them due at once instead.
func (f *Fetcher) rememberParked(ctx context.Context, jobs []store.FetchJob, now time.Time) {
	var due []store.FileKey
	f.mu.Lock()
	for _, job := range jobs {
		if p := f.paused[job.Channel]; p != nil {
			p.parked[job.Key] = true
		} else {
			due = append(due, job.Key)
		}
	}
	f.mu.Unlock()
	f.makeDue(ctx, due, now)
}

// makeDue makes released files due at now, so that the claim that follows takes them.
// A file erased or fetched meanwhile is gone from the queue; one whose change fails is
// due at its release's end anyway.
func (f *Fetcher) makeDue(ctx context.Context, keys []store.FileKey, now time.Time) {
	for _, k := range keys {
		err := f.cfg.Store.RetryFile(ctx, k, now, store.FailUnauthorized)
		if err != nil && !errors.Is(err, store.ErrFileGone) && ctx.Err() == nil {
			f.cfg.Log.Error(err, "Making a resumed channel's file due failed; it is fetched when its release ends")
		}
	}
}

// releaseParked returns a paused channel's claimed file to the store, without its
// claim counting as an attempt, due a lease from now: however long the pause, the file
// is claimed and released about once per lease and its retry budget stays whole. The
// file is due at once when the token changes (resumeChangedTokens).
func (f *Fetcher) releaseParked(ctx context.Context, k store.FileKey, now time.Time) {
	err := f.cfg.Store.ReleaseFile(ctx, k, now.Add(f.cfg.lease()))
	if err != nil && !errors.Is(err, store.ErrFileGone) && ctx.Err() == nil {
		// The claim's lease runs out and the file is claimed again, its attempt counted.
		f.cfg.Log.Error(err, "Releasing a paused channel's file failed")
	}
}

// releaseInterruptedTimeout bounds the release of a file cut short by shutdown: the
// worker's shutdown waits for it.
const releaseInterruptedTimeout = 5 * time.Second

// releaseInterrupted returns a file whose download shutdown cut short to the store, due
// now and without its claim counting. ctx has ended: the release runs on a context of
// its own, bounded.
func (f *Fetcher) releaseInterrupted(ctx context.Context, k store.FileKey) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseInterruptedTimeout)
	defer cancel()
	if err := f.cfg.Store.ReleaseFile(rctx, k, f.cfg.Clock.Now()); err != nil && !errors.Is(err, store.ErrFileGone) {
		// Its lease runs out and the file is fetched again, the claim's attempt counted.
		f.cfg.Log.Error(err, "Releasing a file cut short by shutdown failed")
	}
}

func (f *Fetcher) takeChanged() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.changed
	f.changed = false
	return c
}

// run makes one attempt for a job and records its outcome.
func (f *Fetcher) run(ctx context.Context, job store.FetchJob) {
	ch, found := f.cfg.Channels.Lookup(job.Channel)
	now := f.cfg.Clock.Now()
	var out outcome
	switch {
	case job.Key.Platform == meta.WhatsApp && expired(now, job.ReceivedAt):
		out = fail(store.FailExpired)
	case job.Key.Platform == meta.WhatsApp && found && ch.AccessToken == "":
		out = fail(store.FailNoToken)
	default:
		out = f.fetchJob(ctx, job, ch, found)
	}
	if ctx.Err() != nil && out.verdict != vOK {
		// Interrupted by shutdown, not failed: no outcome is recorded and the claim is
		// given back, so that a restart fetches the file at once with no attempt spent.
		f.releaseInterrupted(ctx, job.Key)
		f.release(job.Key)
		return
	}
	f.record(ctx, job, ch, out)
}

// record writes an attempt's outcome to the store and the metrics.
func (f *Fetcher) record(ctx context.Context, job store.FetchJob, ch channels.Channel, out outcome) {
	m := f.cfg.Metrics
	log := f.cfg.Log.WithValues("channel", job.Channel, "platform", job.Key.Platform)
	var err error
	switch {
	case out.gone:
		log.V(1).Info("File erased while it was fetched; dropped")
	case out.verdict == vOK:
		m.fetchedFile(out.stored)
		log.V(1).Info("File fetched", "bytes", out.stored.Size, "new", out.stored.New)
	case out.verdict == vTokenRefused:
		// Released before the pause is visible: a token change seen meanwhile makes the
		// file due at once rather than at its release's end.
		f.releaseParked(ctx, job.Key, f.cfg.Clock.Now())
		f.park(job, ch)
		m.tokenRefused(job.Channel)
	case out.verdict == vFail:
		err = f.cfg.Store.FailFile(ctx, job.Key, out.reason)
		m.failedFile(out.reason)
		log.Info("File not fetched", "reason", out.reason, "attempts", job.Attempts+1)
	case out.verdict == vRetry:
		next, reason := f.policy.next(f.cfg.Clock.Now(), job.Attempts+1, job.Key.Platform == meta.WhatsApp, job.ReceivedAt)
		if reason != "" {
			err = f.cfg.Store.FailFile(ctx, job.Key, reason)
			m.failedFile(reason)
			log.Info("File not fetched", "reason", reason, "lastError", out.reason, "attempts", job.Attempts+1)
			break
		}
		err = f.cfg.Store.RetryFile(ctx, job.Key, next, out.reason)
		m.retried(out.reason)
		log.V(1).Info("File fetch will be retried", "reason", out.reason, "attempts", job.Attempts+1, "at", next)
		f.schedule(next)
	}
	if err != nil && !errors.Is(err, store.ErrFileGone) && ctx.Err() == nil {
		// The lease runs out and the file is claimed again: nothing is lost.
		log.Error(err, "Recording a fetch attempt failed")
	}
	f.stale.Store(true)
	f.release(job.Key)
}

// park pauses the job's channel for the token it was refused with and remembers the
// file, to make it due when a new token arrives (the caller releases it).
func (f *Fetcher) park(job store.FetchJob, ch channels.Channel) {
	sum := sha256.Sum256([]byte(ch.AccessToken))
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.paused[job.Channel]
	if p == nil || p.token != sum {
		np := &pause{token: sum, at: f.cfg.Clock.Now(), parked: map[store.FileKey]bool{}}
		if p != nil { // files parked under the other token wait for the same change
			maps.Copy(np.parked, p.parked)
		}
		p = np
		f.paused[job.Channel] = p
		f.changed = true
		f.cfg.Log.Info("Meta refused the channel's access token; its media fetching is paused until the token Secret changes", "channel", job.Channel)
	}
	p.parked[job.Key] = true
}

func (f *Fetcher) release(k store.FileKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.busy, k)
}

// schedule remembers a retry's due time, so that the loop wakes for it.
func (f *Fetcher) schedule(at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, _ := slices.BinarySearchFunc(f.due, at, time.Time.Compare)
	f.due = slices.Insert(f.due, i, at)
}
