package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storegen"
)

// People added beside a store's bulk, by index: the persons erased one by one (20
// messages each), the person erased under load, and the load's senders.
const (
	firstTarget = 10_000_000
	bigPerson   = 20_000_000
	firstSender = 30_000_000
)

type sizeResult struct {
	size
	build, erase, delete time.Duration // erase one subject and one indexed delete: medians
	tenantErase          time.Duration
	tenantBytes          int64
}

type phaseResult struct {
	name     string
	took     time.Duration // of the erasure or retention run (0 for the baseline)
	deleted  int           // messages it removed
	requests int
	p50, p99 time.Duration
	errors   int64
}

type backendResult struct {
	backend string
	sizes   []sizeResult
	phases  []phaseResult
	plans   []store.PlanCheck
}

func runBackend(ctx context.Context, c config, backend string) (backendResult, error) {
	r := backendResult{backend: backend}
	var tenants []*tenant
	for i, s := range c.sizes {
		largest := i == len(c.sizes)-1
		t, err := open(ctx, c, backend)
		if err != nil {
			return r, err
		}
		tenants = append(tenants, t)
		old := 0
		if largest && c.retention > 0 {
			old = min(s.contacts, c.retention/max(1, s.messages/s.contacts))
		}
		fmt.Printf("%s: building %d messages, %d contacts...\n", backend, s.messages, s.contacts)
		start := time.Now()
		if err := build(ctx, t.st, s, old); err != nil {
			return r, err
		}
		for k := range c.reps {
			if err := addPerson(ctx, t.st, firstTarget+k, 20); err != nil {
				return r, err
			}
		}
		if err := t.analyze(ctx); err != nil {
			return r, fmt.Errorf("analyze: %w", err)
		}
		sr := sizeResult{size: s, build: time.Since(start)}
		fmt.Printf("%s: built in %s\n", backend, sr.build.Round(time.Second))
		if sr.erase, sr.delete, err = eraseVersusDelete(ctx, t.st, s, c.reps); err != nil {
			return r, err
		}
		r.sizes = append(r.sizes, sr)
		if !largest {
			continue
		}
		if r.plans, err = t.plans(ctx); err != nil {
			return r, fmt.Errorf("query plans: %w", err)
		}
		if r.phases, err = underLoad(ctx, c, t.st, backend); err != nil {
			return r, err
		}
	}
	for i, t := range tenants {
		took, size, err := t.erase(ctx)
		if err != nil {
			return r, fmt.Errorf("erase tenant: %w", err)
		}
		r.sizes[i].tenantErase, r.sizes[i].tenantBytes = took, size
	}
	return r, nil
}

// eraseVersusDelete times, reps times each, erasing one of the 20-message persons and
// one indexed single-row delete (a delivery that unsends one message), and returns the
// medians.
func eraseVersusDelete(ctx context.Context, st store.Store, s size, reps int) (erase, del time.Duration, err error) {
	var es, ds []time.Duration
	for k := range reps {
		start := time.Now()
		counts, err := st.Erase(ctx, store.EraseRequest{
			Subject:    store.Subject{Platform: meta.WhatsApp, ID: storegen.WaID(firstTarget + k)},
			SubjectRef: fmt.Sprintf("hmac-sha256:bench%d", k), RequestedAt: time.Now(),
		})
		if err != nil {
			return 0, 0, fmt.Errorf("erase: %w", err)
		}
		es = append(es, time.Since(start))
		if counts.Messages != 20 {
			return 0, 0, fmt.Errorf("erase: %d messages erased, want 20", counts.Messages)
		}
		// The newest person's messages: never among those retention removes later.
		i := s.contacts - 1 - k
		start = time.Now()
		res, err := st.Commit(ctx, &meta.Batch{Deletions: []meta.Deletion{{Platform: meta.WhatsApp, Channel: "wa", MessageID: storegen.MessageID(i, 0)}}})
		if err != nil {
			return 0, 0, fmt.Errorf("delete: %w", err)
		}
		ds = append(ds, time.Since(start))
		if res.MessagesDeleted != 1 {
			return 0, 0, fmt.Errorf("delete: %d messages deleted, want 1", res.MessagesDeleted)
		}
	}
	return median(es), median(ds), nil
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// underLoad measures ingest latency at a fixed rate of single-message deliveries: alone,
// while one person with c.bigSubject messages is erased, and while retention removes
// the old people's messages (in batches of c.pruneBatch).
func underLoad(ctx context.Context, c config, st store.Store, backend string) ([]phaseResult, error) {
	fmt.Printf("%s: adding a person with %d messages...\n", backend, c.bigSubject)
	if err := addPerson(ctx, st, bigPerson, c.bigSubject); err != nil {
		return nil, err
	}
	var seq atomic.Int64
	load := func(name string, work func() (int, error)) (phaseResult, error) {
		fmt.Printf("%s: ingest at %d deliveries/s: %s...\n", backend, c.rate, name)
		return ingest(ctx, st, c.rate, &seq, name, work)
	}
	var out []phaseResult
	// Warm-up, not reported: the bulk load leaves a large WAL to checkpoint.
	if _, err := load("warm-up", func() (int, error) { time.Sleep(2 * time.Second); return 0, nil }); err != nil {
		return nil, err
	}
	// Each phase with deletions right after one without, so that a busy machine's
	// changing load moves both figures of a pair alike.
	alone := func() (int, error) { time.Sleep(c.phase); return 0, nil }
	for _, w := range []struct {
		name string
		work func() (int, error)
	}{
		{fmt.Sprintf("erasing a person with %d messages", c.bigSubject), func() (int, error) {
			counts, err := st.Erase(ctx, store.EraseRequest{Subject: store.Subject{Platform: meta.WhatsApp, ID: storegen.WaID(bigPerson)},
				SubjectRef: "hmac-sha256:big", RequestedAt: time.Now()})
			return counts.Messages, err
		}},
		{"retention", func() (int, error) {
			n := 0
			for {
				res, err := st.Prune(ctx, store.PruneRequest{Before: storegen.Epoch.Add(-Old / 2), Limit: c.pruneBatch})
				if err != nil {
					return n, err
				}
				n += res.Counts.Messages
				if !res.More {
					return n, nil
				}
			}
		}},
	} {
		base, err := load("alone", alone)
		if err != nil {
			return nil, err
		}
		p, err := load(w.name, w.work)
		if err != nil {
			return nil, err
		}
		out = append(out, base, p)
	}
	return out, nil
}

// ingest sends single-message deliveries of new senders at rate per second (open loop:
// a slow commit does not slow the sending) while work runs, and reports their latency.
func ingest(ctx context.Context, st store.Store, rate int, seq *atomic.Int64, name string, work func() (int, error)) (phaseResult, error) {
	r := phaseResult{name: name}
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			n := int(seq.Add(1))
			wg.Go(func() {
				b := storegen.Person(firstSender+n%5000, n, 1, 0)
				start := time.Now()
				_, err := st.Commit(ctx, &b)
				d := time.Since(start)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					r.errors++
					return
				}
				lat = append(lat, d)
			})
		}
	}()
	start := time.Now()
	deleted, err := work()
	r.took, r.deleted = time.Since(start), deleted
	close(stop)
	wg.Wait()
	if err != nil {
		return r, fmt.Errorf("%s: %w", name, err)
	}
	if len(lat) == 0 {
		return r, fmt.Errorf("%s: no delivery committed", name)
	}
	slices.Sort(lat)
	r.requests = len(lat)
	r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	return r, nil
}
