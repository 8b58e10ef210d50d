package reseal

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// Over the real SQLite store: a store filled in clear and reopened with a key is
// brought under it by one pass in batches, reported once as fully encrypted, and reads
// the same afterwards; stopped after its first batch, the pass resumes after a reopen.
func TestPassEncryptsAClearSQLiteStoreAndResumesAfterAStop(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	st, err := sqlite.Open(dir, sqlite.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	for i := range 40 {
		_, err := st.Commit(context.Background(), &meta.Batch{Messages: []meta.Message{{
			Platform: meta.WhatsApp, Channel: "wa", ID: fmt.Sprintf("wamid.r%d", i), Subject: "15555550142",
			Direction: meta.Inbound, Type: "text", Text: "hello", Timestamp: time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC),
		}}})
		g.Expect(err).NotTo(HaveOccurred())
	}
	before := storetest.Export(t, st, nil)
	g.Expect(st.Close()).To(Succeed())

	keys := storetest.NewKeys(t)
	open := func() *sqlite.Store {
		s, err := sqlite.Open(dir, sqlite.Options{Keys: keys})
		g.Expect(err).NotTo(HaveOccurred())
		return s
	}
	// First start: stopped during the pause after its first batch.
	st = open()
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	rep := make(reports, 10)
	r := &Runner{Config: Config{BatchSize: 8, Pause: time.Second, Interval: time.Hour, Reporter: rep, Clock: clk},
		Store: st, Metrics: NewMetrics(prometheus.NewRegistry()), Log: logr.Discard()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	g.Eventually(clk.Waiters).Should(Equal(2))
	cancel()
	<-done
	g.Expect(rep).To(Receive(Equal(store.EncryptionState{Encrypts: true, ActiveVersion: 1})))
	g.Expect(value(r.Metrics.resealed)).To(BeNumerically(">", 0))
	g.Expect(st.Close()).To(Succeed())

	// Second start: the pass resumes and completes, without pauses.
	st = open()
	defer st.Close()
	r = &Runner{Config: Config{BatchSize: 8, Interval: time.Hour, Reporter: rep, Clock: clk},
		Store: st, Metrics: NewMetrics(prometheus.NewRegistry()), Log: logr.Discard()}
	state, err := r.RunOnce(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(state.FullyEncrypted()).To(BeTrue(), "%+v", state)
	g.Expect(rep).To(Receive(Equal(store.EncryptionState{Encrypts: true, ActiveVersion: 1})), "reported as the pass starts")
	g.Expect(rep).To(Receive(Equal(store.EncryptionState{Encrypts: true, ActiveVersion: 1, SealedVersion: 1})))
	g.Expect(value(r.Metrics.pending)).To(Equal(0.0))
	g.Expect(storetest.Export(t, st, nil)).To(Equal(before), "the store reads the same")
}
