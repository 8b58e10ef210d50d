package frontdoor

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// Deliveries that arrive while maxForwarding forwards of their tenant are in flight
// wait, and go together in the next forward: every one is answered 200 only once the
// worker committed it, and each is stored once.
func TestConcurrentDeliveriesShareForwards(t *testing.T) {
	g := NewWithT(t)
	acme := startWorker(t, "acme", acmeChannels)
	d := newDoor(t, tenantOf("acme", acme, acmeChannels))
	arrived, release := make(chan struct{}, 64), make(chan struct{})
	hold := func() { arrived <- struct{}{}; <-release }
	acme.gate.Store(&hold)

	var answers sync.Map
	var wg sync.WaitGroup
	send := func(id string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers.Store(id, d.postSigned(waText("123456789012345", id)))
		}()
	}
	var ids []string
	for i := range maxForwarding {
		ids = append(ids, fmt.Sprintf("wamid.LEAD%d", i))
		send(ids[i])
		<-arrived // the forward is at the worker, held
	}
	const queued = 10
	for i := range queued {
		ids = append(ids, fmt.Sprintf("wamid.WAIT%d", i))
		send(ids[len(ids)-1])
	}
	q, _ := d.srv.queues.Load(queueKey{Target{Tenant: "acme", Worker: acme.url()}, "whatsapp_business_account"})
	g.Eventually(func() int {
		q.(*forwardQueue).mu.Lock()
		defer q.(*forwardQueue).mu.Unlock()
		return len(q.(*forwardQueue).waiting)
	}, 10*time.Second, 5*time.Millisecond).Should(Equal(queued))
	acme.gate.Store(nil)
	close(release)
	wg.Wait()

	for _, id := range ids {
		if code, _ := answers.Load(id); code != http.StatusOK {
			t.Errorf("%s answered %v", id, code)
		}
	}
	// The held forwards, then one for all the waiting deliveries.
	if n := acme.forwards.Load(); n != maxForwarding+1 {
		t.Errorf("%d forwards for %d deliveries, want %d", n, len(ids), maxForwarding+1)
	}
	var m dto.Metric
	if err := d.srv.m.batch.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n, sum := m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(); n != maxForwarding+1 || sum != float64(len(ids)) {
		t.Errorf("forward_deliveries: %d forwards of %v deliveries, want %d of %d", n, sum, maxForwarding+1, len(ids))
	}
	var want []string
	for _, id := range ids {
		want = append(want, "wa/"+id)
	}
	slices.Sort(want)
	if got := acme.messages(); !slices.Equal(got, want) {
		t.Errorf("acme holds %v, want %v", got, want)
	}
}

// One forward's result is every member's; a delivery whose deadline passes while it
// waits leaves the queue with an error, and the others still go.
func TestForwardQueue(t *testing.T) {
	q := &forwardQueue{maxBytes: maxBatchBytes}
	started, release := make(chan struct{}, maxForwarding), make(chan error)
	var batches [][]*chunk
	var mu sync.Mutex
	post := func(batch []*chunk, _ time.Time) error {
		mu.Lock()
		batches = append(batches, batch)
		mu.Unlock()
		started <- struct{}{}
		return <-release
	}
	far := time.Now().Add(time.Hour)
	chunkOf := func(deadline time.Time) *chunk { return &chunk{body: []byte("{}"), deadline: deadline} }
	results := make(chan error, 16)
	for range maxForwarding {
		go func() { results <- q.send(chunkOf(far), post) }()
		<-started
	}
	// Two that wait, one of which gives up at its deadline.
	go func() { results <- q.send(chunkOf(time.Now().Add(50*time.Millisecond)), post) }()
	if err := <-results; !errors.Is(err, errQueueTimeout) {
		t.Fatalf("a delivery past its deadline in the queue: %v, want errQueueTimeout", err)
	}
	waiting := chunkOf(far)
	go func() { results <- q.send(waiting, post) }()
	g := NewWithT(t)
	g.Eventually(func() int { q.mu.Lock(); defer q.mu.Unlock(); return len(q.waiting) }, 10*time.Second, 5*time.Millisecond).Should(Equal(1))
	// The first forward fails: its one member gets the error; the waiting delivery leads
	// the next forward, which succeeds.
	boom := errors.New("worker answered 503")
	release <- boom
	if err := <-results; !errors.Is(err, boom) {
		t.Fatalf("member of the failed forward: %v", err)
	}
	<-started
	for range maxForwarding {
		release <- nil
	}
	for range maxForwarding {
		if err := <-results; err != nil {
			t.Fatalf("forward: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if last := batches[len(batches)-1]; len(last) != 1 || last[0] != waiting {
		t.Errorf("the waiting delivery went in %v", last)
	}
	if q.sending != 0 || len(q.waiting) != 0 {
		t.Errorf("queue left with %d sending, %d waiting", q.sending, len(q.waiting))
	}
}

// A joined forward splits into the parts of its chunks in turn; a chunk without
// entries makes it an envelope of the parts, which splits the same.
func TestForwardBody(t *testing.T) {
	var chunks []*chunk
	var want []meta.Part
	for i, body := range [][]byte{waText("123456789012345", "wamid.B1"), mixed(t, waText("123456789012345", "wamid.B2"), waText("123456789012345", "wamid.B3"))} {
		parts, entries, err := meta.SplitRouting(body)
		if err != nil || entries == nil {
			t.Fatalf("delivery %d: %v, entries %q", i, err, entries)
		}
		chunks = append(chunks, &chunk{parts: parts, body: body, entries: entries})
		want = append(want, parts...)
	}
	check := func(name string, batch []*chunk, want []meta.Part) {
		t.Helper()
		body, err := forwardBody(batch)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := meta.Split(body)
		if err != nil || len(got) != len(want) {
			t.Fatalf("%s: %d parts (%v), want %d", name, len(got), err, len(want))
		}
		for i := range want {
			if got[i].AccountID != want[i].AccountID || got[i].EntryID != want[i].EntryID || string(got[i].Raw) != string(want[i].Raw) {
				t.Errorf("%s: part %d is %+v, want %+v", name, i, got[i], want[i])
			}
		}
	}
	check("one", chunks[:1], want[:1])
	check("joined", chunks, want)
	chunks[1].entries = nil
	check("envelope", chunks, want)
}

// A forward takes the waiting chunks in their order of arrival while they fit in
// maxBytes with its own; the rest wait for the next.
func TestForwardQueueTakesWhatFits(t *testing.T) {
	sized := func(n int) *waiter { return &waiter{c: &chunk{body: make([]byte, n)}} }
	for _, tc := range []struct {
		lead    int
		waiting []int
		taken   int
	}{
		{2, []int{4, 4, 4}, 2},
		{2, []int{4, 4}, 2},
		{2, []int{9, 1}, 0}, // order of arrival: the 1 does not jump the 9
		{12, []int{1}, 0},   // a lead larger than maxBytes still goes, alone
		{0, nil, 0},
	} {
		q := &forwardQueue{maxBytes: 10}
		for _, n := range tc.waiting {
			q.waiting = append(q.waiting, sized(n))
		}
		rest := slices.Clone(q.waiting[tc.taken:])
		batch := q.take(sized(tc.lead))
		if len(batch) != 1+tc.taken || !slices.Equal(q.waiting, rest) {
			t.Errorf("lead %d, waiting %v: took %d, left %d; want %d taken", tc.lead, tc.waiting, len(batch)-1, len(q.waiting), tc.taken)
		}
	}
}
