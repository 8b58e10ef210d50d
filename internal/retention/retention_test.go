package retention

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

var t0 = time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)

const age = 30 * 24 * time.Hour

// reports collects the runs' reports.
type reports chan Report

func (r reports) Report(_ context.Context, rep Report) error {
	r <- rep
	return nil
}

func next(t *testing.T, r reports) Report {
	t.Helper()
	select {
	case rep := <-r:
		return rep
	case <-time.After(30 * time.Second): // a guard, not a wait: reports arrive at once
		t.Fatal("no retention run reported")
		return Report{}
	}
}

func openSQLite(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func message(id string, ts time.Time) meta.Message {
	return meta.Message{Platform: meta.WhatsApp, Channel: "wa", ID: id, Subject: "15555550142", Direction: meta.Inbound,
		Type: "text", Text: "hello", Timestamp: ts}
}

func storedIDs(t *testing.T, st store.Store) []string {
	t.Helper()
	var ids []string
	for _, m := range storetest.Export(t, st, nil).Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

// The loop runs at start and then at every interval of the injected clock; each run
// deletes, in batches, what is older than the age at that moment, and reports and
// counts it.
func TestRetentionRunsAtStartAndEveryIntervalOverSQLite(t *testing.T) {
	g := NewWithT(t)
	st := openSQLite(t)
	// "a" is one second past the age at start, "b" one second short of it; "c" and "d"
	// pass the age within the first hour.
	if _, err := st.Commit(context.Background(), &meta.Batch{Messages: []meta.Message{
		message("a", t0.Add(-age-time.Second)), message("b", t0.Add(-age+time.Second)),
		message("c", t0.Add(-age+30*time.Minute)), message("d", t0.Add(-age+59*time.Minute)),
		message("e", t0.Add(-age+61*time.Minute)),
	}}); err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(t0)
	reg := prometheus.NewRegistry()
	got := make(reports, 10)
	r := &Runner{
		Config: Config{MaxAge: age, Interval: time.Hour, BatchSize: 2, Reporter: got, Clock: clk},
		Store:  st, Metrics: NewMetrics(reg), Log: logr.Discard(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	first := next(t, got)
	if first.Err != nil || first.Pruned != (store.Counts{Messages: 1}) || !first.StartedAt.Equal(t0) || !first.Cutoff().Equal(t0.Add(-age)) {
		t.Fatalf("first run %+v", first)
	}
	if ids := storedIDs(t, st); !reflect.DeepEqual(ids, []string{"b", "c", "d", "e"}) {
		t.Fatalf("after the first run: %v", ids)
	}

	// The next run is one interval later, not before: the loop waits on the clock.
	g.Eventually(clk.HasWaiters).Should(BeTrue())
	clk.Step(time.Hour)
	second := next(t, got)
	if second.Err != nil || second.Pruned != (store.Counts{Messages: 3}) || !second.StartedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("second run %+v", second)
	}
	if ids := storedIDs(t, st); !reflect.DeepEqual(ids, []string{"e"}) {
		t.Fatalf("after the second run: %v", ids)
	}
	g.Expect(value(r.Metrics.prunedTotal.WithLabelValues(KindMessages))).To(Equal(4.0))
	g.Expect(value(r.Metrics.runs.WithLabelValues(resultSucceeded))).To(Equal(2.0))
	g.Expect(value(r.Metrics.lastRun)).To(Equal(float64(t0.Add(time.Hour).Unix())))
	g.Expect(value(r.Metrics.maxAgeSeconds)).To(Equal(age.Seconds()))
	g.Expect(histogramCount(t, reg, "omniflow_retention_run_duration_seconds")).To(Equal(uint64(2)))
}

// A run the store refuses is reported and counted as failed, and the loop goes on.
func TestRetentionRunFailureIsReportedAndCounted(t *testing.T) {
	g := NewWithT(t)
	st := openSQLite(t)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	got := make(reports, 10)
	r := &Runner{
		Config: Config{MaxAge: age, Interval: time.Hour, BatchSize: 10, Reporter: got, Clock: clocktesting.NewFakeClock(t0)},
		Store:  st, Metrics: NewMetrics(prometheus.NewRegistry()), Log: logr.Discard(),
	}
	rep := r.RunOnce(context.Background())
	if !errors.Is(rep.Err, store.ErrClosed) {
		t.Fatalf("run on a closed store: %+v", rep)
	}
	if len(got) != 1 {
		t.Fatalf("reports: %d, want the failed run reported", len(got))
	}
	g.Expect(value(r.Metrics.runs.WithLabelValues(resultFailed))).To(Equal(1.0))
	g.Expect(value(r.Metrics.lastSuccess)).To(Equal(0.0))
}

func TestConfigValidateNamesTheFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{MaxAge: -time.Hour}, "--retention-max-age"},
		{Config{MaxAge: time.Hour, BatchSize: 1}, "--retention-interval"},
		{Config{MaxAge: time.Hour, Interval: time.Hour}, "--retention-batch-size"},
		{Config{}, ""}, // off: nothing else matters
		{Config{MaxAge: time.Hour, Interval: time.Hour, BatchSize: 1}, ""},
	} {
		err := tc.c.Validate()
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %q", tc.c, err, tc.want)
		}
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		panic(err)
	}
	if c := out.GetCounter(); c != nil {
		return c.GetValue()
	}
	return out.GetGauge().GetValue()
}

// A run cut short because the worker is stopping is not a failure: nothing is reported
// or counted as failed.
func TestRetentionRunStoppedByShutdownIsNotAFailure(t *testing.T) {
	g := NewWithT(t)
	got := make(reports, 10)
	r := &Runner{
		Config: Config{MaxAge: age, Interval: time.Hour, BatchSize: 10, Reporter: got, Clock: clocktesting.NewFakeClock(t0)},
		Store:  openSQLite(t), Metrics: NewMetrics(prometheus.NewRegistry()), Log: logr.Discard(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.RunOnce(ctx)
	g.Expect(got).To(BeEmpty())
	g.Expect(value(r.Metrics.runs.WithLabelValues(resultFailed))).To(Equal(0.0))
	g.Expect(value(r.Metrics.runs.WithLabelValues(resultSucceeded))).To(Equal(0.0))
}
