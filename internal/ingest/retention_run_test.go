package ingest_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/omniflowcrm/omniflow-operator/internal/ingest"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/retention"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
)

type reportChan chan retention.Report

func (c reportChan) Report(_ context.Context, r retention.Report) error {
	c <- r
	return nil
}

// With a maximum age, the worker prunes its store as soon as it is ready, reports the
// run and shows it on /metrics; without one, nothing is pruned (the other serve tests).
func TestServeRunsRetentionAtStartWithItsMetrics(t *testing.T) {
	t.Parallel()
	const age = 48 * time.Hour
	now := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	st, err := sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(id string, ts time.Time) meta.Message {
		return meta.Message{Platform: meta.WhatsApp, Channel: "wa", ID: id, Subject: "447009000001", Direction: meta.Inbound, Type: "text", Timestamp: ts}
	}
	if _, err := st.Commit(context.Background(), &meta.Batch{
		Contacts: []meta.Contact{{Platform: meta.WhatsApp, Channel: "wa", Subject: "447009000009", WaID: "447009000009"}},
		Messages: []meta.Message{msg("old", now.Add(-age-time.Second)), msg("young", now.Add(-age+time.Second)),
			func() meta.Message { m := msg("gone", now.Add(-age-time.Hour)); m.Subject = "447009000009"; return m }()},
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	reports := make(reportChan, 4)
	w := serveWorker(t, func(c *ingest.ServeConfig) {
		c.DataDir = dir
		c.Retention = retention.Config{MaxAge: age, Interval: time.Hour, BatchSize: 10, Reporter: reports, Clock: clocktesting.NewFakeClock(now)}
	})
	var rep retention.Report
	select {
	case rep = <-reports:
	case <-time.After(30 * time.Second): // a guard: the run starts once the worker is ready
		t.Fatal("no retention run at start")
	}
	if rep.Err != nil || rep.Pruned != (store.Counts{Messages: 2, Contacts: 1}) {
		t.Fatalf("run at start: %+v", rep)
	}
	samples := scrape(t, w.addr)
	for series, want := range map[string]float64{
		`omniflow_retention_pruned_total{kind="messages"}`:  2,
		`omniflow_retention_pruned_total{kind="contacts"}`:  1,
		`omniflow_retention_pruned_total{kind="files"}`:     0,
		`omniflow_retention_runs_total{result="succeeded"}`: 1,
		`omniflow_retention_last_run_timestamp_seconds`:     float64(now.Unix()),
		`omniflow_retention_max_age_seconds`:                age.Seconds(),
		`omniflow_retention_run_duration_seconds_count`:     1,
	} {
		if got, ok := samples[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	w.stop()
	if err := <-w.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	w.done <- nil // for the cleanup
	if ids := exportMessageIDs(t, dir); !reflect.DeepEqual(ids, map[string]int{"young": 1}) {
		t.Errorf("stored after the run: %v", ids)
	}
}
