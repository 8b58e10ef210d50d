package mediafetch

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

// Reporter publishes the media report (workerreport.MediaReporter in a cluster).
type Reporter interface {
	Report(ctx context.Context, m workerreport.Media) error
}

// reportState is what was last published and observed.
type reportState struct {
	// written is the last report the reporter accepted (nil: none yet).
	written *workerreport.Media
	// stats are the store's figures as last read, at readAt (only the Run goroutine
	// touches them).
	stats  *store.FileStats
	readAt time.Time
}

// statsRefresh is how often the store's figures are read when the fetcher changed
// nothing: erasure and retention remove files without telling it.
const statsRefresh = 5 * time.Minute

// mediaReport builds the report from the store's figures and the channels' state: the
// paused channels with when their token was refused, and the WhatsApp channels without
// a token (their media stays metadata only). ReportedAt is left to the caller.
func mediaReport(st store.FileStats, paused map[string]time.Time, chans Channels) workerreport.Media {
	m := workerreport.Media{
		Pending: int64(st.Pending), Fetched: int64(st.Fetched), Failed: int64(st.Failed),
		MetadataOnly: int64(st.MetadataOnly), Blobs: int64(st.Blobs), Bytes: st.Bytes,
	}
	if !st.OldestPending.IsZero() {
		m.OldestPendingAt = &metav1.Time{Time: st.OldestPending.UTC().Truncate(time.Second)}
	}
	for name, at := range paused {
		updateChannel(&m, name, func(c *workerreport.MediaChannel) {
			c.TokenRefusedAt = &metav1.Time{Time: at.UTC().Truncate(time.Second)}
		})
	}
	for _, name := range chans.Names() {
		if ch, ok := chans.Lookup(name); ok && ch.Platform == meta.WhatsApp && ch.AccessToken == "" {
			updateChannel(&m, name, func(c *workerreport.MediaChannel) { c.NoToken = true })
		}
	}
	return m
}

// updateChannel applies set to the report's entry for a channel, creating it.
func updateChannel(m *workerreport.Media, name string, set func(*workerreport.MediaChannel)) {
	if m.Channels == nil {
		m.Channels = map[string]workerreport.MediaChannel{}
	}
	c := m.Channels[name]
	set(&c)
	m.Channels[name] = c
}

// sameReport tells whether two reports say the same, whenever they were made.
func sameReport(a, b *workerreport.Media) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	x.ReportedAt, y.ReportedAt = metav1.Time{}, metav1.Time{}
	return equality.Semantic.DeepEqual(x, y)
}

// publish reads the store's figures into the gauges and, when a reporter is set and the
// report changed since the last accepted write, writes it. An idle worker therefore writes nothing: the report is a state, not a
// heartbeat.
func (f *Fetcher) publish(ctx context.Context) {
	now := f.cfg.Clock.Now()
	// The figures are read only when something changed them (a commit with files, a
	// fetch's outcome) or when they are old: an idle worker does not scan its files
	// table every interval.
	if f.stale.Swap(false) || f.report.stats == nil || now.Sub(f.report.readAt) >= statsRefresh {
		st, err := f.cfg.Store.FileStats(ctx, now)
		if err != nil {
			f.stale.Store(true)
			if ctx.Err() == nil {
				f.cfg.Log.Error(err, "Reading the fetch queue's figures failed")
			}
			return
		}
		f.report.stats, f.report.readAt = &st, now
		f.cfg.Metrics.observeQueue(st)
	}
	if f.cfg.Reporter == nil {
		return
	}
	st := *f.report.stats
	f.mu.Lock()
	paused := make(map[string]time.Time, len(f.paused))
	for name, p := range f.paused {
		paused[name] = p.at
	}
	last := f.report.written
	f.mu.Unlock()
	rep := mediaReport(st, paused, f.cfg.Channels)
	if sameReport(&rep, last) {
		return
	}
	rep.ReportedAt = metav1.Time{Time: now.UTC().Truncate(time.Second)}
	if err := f.cfg.Reporter.Report(ctx, rep); err != nil {
		f.cfg.Metrics.reportFailed()
		if ctx.Err() == nil {
			f.cfg.Log.Error(err, "Publishing the media report failed; retried at the next check")
		}
		return
	}
	f.mu.Lock()
	f.report.written = &rep
	f.mu.Unlock()
}
