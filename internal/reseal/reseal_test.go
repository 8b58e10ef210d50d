package reseal

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// fakeStore is a store.Resealer over a count of records still to reseal: the loop's
// logic in isolation (the backends' passes are tested in internal/store/storetest).
type fakeStore struct {
	mu      sync.Mutex
	active  datakey.Version
	sealed  datakey.Version
	left    int // records not yet under active
	total   int // records stored
	calls   int
	failAt  int // the call that fails (1-based), 0: none
	batches []int
}

func (f *fakeStore) Reseal(_ context.Context, limit int) (int, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls == f.failAt {
		return 0, false, errors.New("open messages record: datakey: record does not authenticate")
	}
	f.batches = append(f.batches, limit)
	n := min(limit, f.left)
	f.left -= n
	if f.left == 0 {
		f.sealed = f.active
	}
	return n, f.left == 0, nil
}

func (f *fakeStore) EncryptionState(context.Context) (store.EncryptionState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return store.EncryptionState{Encrypts: true, ActiveVersion: f.active, SealedVersion: f.sealed}, nil
}

// rotate makes a new version active: every record is to be resealed.
func (f *fakeStore) rotate() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.active++
	f.left = f.total
}

func (f *fakeStore) remaining() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.left
}

// value reads a gauge or counter.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

type reports chan store.EncryptionState

func (r reports) Report(_ context.Context, s store.EncryptionState) error {
	r <- s
	return nil
}

func newRunner(st *fakeStore, clk *clocktesting.FakeClock, changed chan struct{}, rep Reporter) *Runner {
	return &Runner{
		Config: Config{BatchSize: 256, Pause: 10 * time.Millisecond, Interval: time.Minute, Changed: changed, Reporter: rep, Clock: clk},
		Store:  st, Metrics: NewMetrics(prometheus.NewRegistry()), Log: logr.Discard(),
	}
}

// A store migrated from clear (1,000 records under no key) is brought under version 1
// in batches of 256 with a pause between them on the injected clock; the metrics say
// pending meanwhile and the records resealed; the state is reported once, and an idle
// loop reports nothing more. A rotation heard through Changed starts a new pass at once.
func TestPassRunsInBatchesWithPausesAndAgainAfterARotation(t *testing.T) {
	g := NewWithT(t)
	st := &fakeStore{active: 1, left: 1000, total: 1000}
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	changed := make(chan struct{}, 1)
	rep := make(reports, 10)
	r := newRunner(st, clk, changed, rep)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// The state is reported as the pass starts; the first batch runs at once, the
	// next waits for the pause.
	g.Eventually(rep).Should(Receive(Equal(store.EncryptionState{Encrypts: true, ActiveVersion: 1})))
	g.Eventually(st.remaining).Should(Equal(1000 - 256))
	g.Eventually(func() float64 { return value(r.Metrics.pending) }).Should(Equal(1.0))
	g.Consistently(st.remaining, 50*time.Millisecond).Should(Equal(1000 - 256))
	// Waiters: the interval's ticker and the pause's timer.
	for want := 1000 - 512; ; want -= 256 {
		g.Eventually(clk.Waiters).Should(Equal(2))
		clk.Step(10 * time.Millisecond)
		g.Eventually(st.remaining).Should(Equal(max(want, 0)))
		if want <= 0 {
			break
		}
	}
	g.Eventually(rep).Should(Receive(Equal(store.EncryptionState{Encrypts: true, ActiveVersion: 1, SealedVersion: 1})))
	g.Expect(value(r.Metrics.pending)).To(Equal(0.0))
	g.Expect(value(r.Metrics.resealed)).To(Equal(1000.0))
	g.Expect(value(r.Metrics.sealedVersion)).To(Equal(1.0))
	g.Expect(st.batches).To(HaveLen(4))

	// Idle: the interval passes, nothing is resealed or reported.
	clk.Step(time.Minute)
	g.Consistently(rep, 50*time.Millisecond).ShouldNot(Receive())

	// A rotation: the watcher's signal starts the pass toward version 2 at once.
	st.rotate()
	changed <- struct{}{}
	g.Eventually(st.remaining).Should(Equal(1000 - 256))
	g.Eventually(rep).Should(Receive(Equal(store.EncryptionState{Encrypts: true, ActiveVersion: 2, SealedVersion: 1})), "not reported before the pass completes")
}

// A pass cut short by an error is logged and counted, reports the state it stopped at
// (not fully encrypted), and is taken up again at the next interval, where it completes.
func TestFailedPassIsRetriedAtTheNextInterval(t *testing.T) {
	g := NewWithT(t)
	st := &fakeStore{active: 1, left: 300, total: 300, failAt: 2}
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	rep := make(reports, 10)
	r := newRunner(st, clk, nil, rep)
	r.Pause = 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	g.Eventually(rep).Should(Receive(Equal(store.EncryptionState{Encrypts: true, ActiveVersion: 1})))
	g.Expect(value(r.Metrics.errors)).To(Equal(1.0))
	g.Expect(value(r.Metrics.pending)).To(Equal(1.0))
	g.Expect(st.remaining()).To(Equal(300 - 256))

	clk.Step(time.Minute)
	g.Eventually(rep).Should(Receive(Equal(store.EncryptionState{Encrypts: true, ActiveVersion: 1, SealedVersion: 1})))
	g.Expect(value(r.Metrics.pending)).To(Equal(0.0))
}

// Stopping mid-pass returns at once, without an error, a report of its end or a log of
// failure:
// the store keeps the position and the next start resumes from it.
func TestStopMidPassReturnsWithoutReport(t *testing.T) {
	g := NewWithT(t)
	st := &fakeStore{active: 1, left: 1000, total: 1000}
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	rep := make(reports, 10)
	r := newRunner(st, clk, nil, rep)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	g.Eventually(clk.Waiters).Should(Equal(2)) // in the pause after the first batch
	cancel()
	g.Eventually(done).Should(BeClosed())
	g.Expect(rep).To(Receive(Equal(store.EncryptionState{Encrypts: true, ActiveVersion: 1})))
	g.Expect(rep).NotTo(Receive())
	g.Expect(st.remaining()).To(Equal(1000 - 256))
	g.Expect(value(r.Metrics.errors)).To(Equal(0.0))
}

func TestConfigValidateNamesTheFlag(t *testing.T) {
	g := NewWithT(t)
	ok := Config{BatchSize: 1, Interval: time.Second}
	g.Expect(ok.Validate()).To(Succeed())
	g.Expect(Config{}.WithDefaults()).To(Equal(Config{BatchSize: DefaultBatchSize, Interval: DefaultInterval}))
	g.Expect(Config{}.WithDefaults().Validate()).To(Succeed())
	for _, c := range []struct {
		cfg  Config
		flag string
	}{
		{Config{BatchSize: 0, Interval: time.Second}, "--reseal-batch-size"},
		{Config{BatchSize: 1, Interval: time.Second, Pause: -1}, "--reseal-pause"},
		{Config{BatchSize: 1}, "--reseal-interval"},
	} {
		g.Expect(c.cfg.Validate()).To(MatchError(ContainSubstring(c.flag)))
	}
}
