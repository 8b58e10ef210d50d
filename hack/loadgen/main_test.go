package main

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

func TestLoopbackOnly(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "http://127.0.0.2:80"} {
		if err := loopbackOnly(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1:80", "http://192.168.1.1", "http://example.com", "https://127.0.0.1", "127.0.0.1:80", ""} {
		if err := loopbackOnly(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// The generated deliveries are what the worker will parse: valid, attributed to the
// channel's phone number, with n fresh message ids each.
func TestBody(t *testing.T) {
	t.Parallel()
	var seq atomic.Int64
	seen := map[string]bool{}
	for _, n := range []int{1, 10} {
		for range 3 {
			parsed, err := meta.ParseDelivery(body("123456789012345", n, 5000, &seq))
			if err != nil {
				t.Fatal(err)
			}
			if len(parsed.Batch.Messages) != n || len(parsed.Batch.Contacts) != 1 {
				t.Fatalf("batch %d parsed to %d messages, %d contacts", n, len(parsed.Batch.Messages), len(parsed.Batch.Contacts))
			}
			for _, m := range parsed.Batch.Messages {
				if seen[m.ID] {
					t.Fatalf("message id %s generated twice", m.ID)
				}
				seen[m.ID] = true
			}
		}
	}
}

// The front door phase is judged against the direct phase: >= 0.8 of its throughput, a
// p99 at most twice its p99, no errors.
func TestFrontdoorVerdict(t *testing.T) {
	t.Parallel()
	ms := func(n int) []time.Duration {
		lat := make([]time.Duration, 100)
		for i := range lat {
			lat[i] = time.Duration(n) * time.Millisecond
		}
		return lat
	}
	direct := result{deliveries: 1000, elapsed: time.Second, lat: ms(10)}
	for name, tc := range map[string]struct {
		fd   result
		want bool
	}{
		"at the line":    {result{deliveries: 800, elapsed: time.Second, lat: ms(20)}, true},
		"too slow":       {result{deliveries: 790, elapsed: time.Second, lat: ms(10)}, false},
		"p99 over 2x":    {result{deliveries: 1000, elapsed: time.Second, lat: ms(21)}, false},
		"errors":         {result{deliveries: 1000, elapsed: time.Second, lat: ms(10), errors: 1}, false},
		"faster is fine": {result{deliveries: 1200, elapsed: time.Second, lat: ms(5)}, true},
	} {
		if ok, line := frontdoorVerdict(direct, tc.fd); ok != tc.want {
			t.Errorf("%s: %v (%s), want %v", name, ok, line, tc.want)
		}
	}
}

// The media deliveries carry one image whose media id the media server serves, with
// bytes of the size the id names, distinct per id.
func TestMediaBodyAndContent(t *testing.T) {
	t.Parallel()
	var seq atomic.Int64
	parsed, err := meta.ParseDelivery(mediaBody("123456789012345", 5000, &seq, 4096))
	if err != nil {
		t.Fatal(err)
	}
	if len(parsed.Batch.Files) != 1 || parsed.Batch.Files[0].MediaID != mediaID(4096, seq.Load()) {
		t.Fatalf("files %+v, want one with media id %s", parsed.Batch.Files, mediaID(4096, seq.Load()))
	}
	content := &mediaContent{blocks: map[int][]byte{}}
	a, err := content.of(mediaID(4096, 1))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := content.of(mediaID(4096, 2))
	if len(a) != 4096 || len(b) != 4096 || string(a) == string(b) {
		t.Fatalf("contents of %d and %d bytes, equal %v: want 4096 distinct bytes each", len(a), len(b), string(a) == string(b))
	}
	if _, err := content.of("bogus"); err == nil {
		t.Fatal("an unknown id is served")
	}
}

// The serial stage's targets: batch-1 ratio >= 0.6 against the baseline, and durable
// batch-10 messages/s >= 4 x durable batch-1 deliveries/s.
func TestSerialVerdict(t *testing.T) {
	t.Parallel()
	rate := func(n int64) result { return result{deliveries: n, elapsed: time.Second} }
	for name, tc := range map[string]struct {
		pairs map[int][]result
		want  bool
	}{
		"both met":         {map[int][]result{1: {rate(1000), rate(600)}, 10: {rate(900), rate(240)}}, true},
		"ratio short":      {map[int][]result{1: {rate(1000), rate(599)}, 10: {rate(900), rate(300)}}, false},
		"batch 10 short":   {map[int][]result{1: {rate(1000), rate(700)}, 10: {rate(900), rate(279)}}, false},
		"batch 1 only":     {map[int][]result{1: {rate(1000), rate(600)}}, true},
		"batch 1 not run":  {map[int][]result{10: {rate(900), rate(10)}}, true},
		"batch 1 only low": {map[int][]result{1: {rate(1000), rate(500)}}, false},
	} {
		if ok, line := serialVerdict(tc.pairs); ok != tc.want {
			t.Errorf("%s: %v (%s), want %v", name, ok, line, tc.want)
		}
	}
}

// The encryption phase judges the sums of its off/on/on/off phases: at least 0.9 of
// the throughput without the key, and no errors with it.
func TestEncryptionVerdict(t *testing.T) {
	t.Parallel()
	run := func(n int64, errs int64) result { return result{deliveries: n, errors: errs, elapsed: time.Second} }
	off := merge([]result{run(1000, 0), run(800, 0)}) // 900/s
	for _, c := range []struct {
		on   result
		want bool
	}{
		{merge([]result{run(850, 0), run(770, 0)}), true},  // 810/s: 0.90
		{merge([]result{run(850, 0), run(760, 0)}), false}, // 805/s: 0.89
		{merge([]result{run(900, 1), run(900, 0)}), false}, // an error with the key
	} {
		if ok, line := encryptionVerdict(1, off, c.on); ok != c.want {
			t.Errorf("%s: verdict %v, want %v", line, ok, c.want)
		}
	}
	if got := off.rate(); got != 900 {
		t.Errorf("combined rate %.0f, want 900", got)
	}
}

// The encryption phase's deliveries carry Meta-shaped ids that are distinct and do not
// sort in arrival order, from senders in no order either.
func TestMetaMessageIDs(t *testing.T) {
	t.Parallel()
	var seq atomic.Int64
	seen := map[string]bool{}
	prev, ordered := "", 0
	prevSender, ascending := "", 0
	for range 200 {
		parsed, err := meta.ParseDelivery(bodyWithIDs("123456789012345", 10, 5000, &seq, true, metaMessageID))
		if err != nil {
			t.Fatal(err)
		}
		if sender := parsed.Batch.Messages[0].Subject; sender > prevSender {
			ascending++
		}
		prevSender = parsed.Batch.Messages[0].Subject
		for _, m := range parsed.Batch.Messages {
			// Meta-shaped: the record of a WhatsApp id names the sender's conversation.
			if seen[m.ID] || string(store.MessageConversation(m.ID)) != m.Subject {
				t.Fatalf("message id %q repeated or not Meta-shaped (conversation %q, sender %q)", m.ID, store.MessageConversation(m.ID), m.Subject)
			}
			seen[m.ID] = true
			if m.ID > prev {
				ordered++
			}
			prev = m.ID
		}
	}
	if ordered > len(seen)*3/4 {
		t.Errorf("%d of %d ids sort after the one before: they follow arrival order", ordered, len(seen))
	}
	if ascending > 150 {
		t.Errorf("%d of 200 deliveries come from a higher number than the one before: senders take turns in order", ascending)
	}
}

// Slices merge into one measurement: counts and time add up, latencies pool, CPU per
// delivery is weighted by deliveries.
func TestMerge(t *testing.T) {
	t.Parallel()
	us := time.Microsecond
	a := result{batch: 1, deliveries: 300, elapsed: time.Second, lat: []time.Duration{3, 1}, acked: 301,
		cost: cost{client: 10 * us, server: 20 * us, behind: 30 * us, busy: 1, serverKnown: true, behindKnown: true}}
	b := result{batch: 1, deliveries: 100, errors: 0, elapsed: 3 * time.Second, lat: []time.Duration{2}, acked: 101,
		cost: cost{client: 50 * us, server: 60 * us, behind: 70 * us, busy: 0.5, serverKnown: true, behindKnown: true}}
	m := merge([]result{a, b})
	if m.deliveries != 400 || m.elapsed != 4*time.Second || m.acked != 402 || m.rate() != 100 {
		t.Errorf("merged counts %+v", m)
	}
	if !slices.Equal(m.lat, []time.Duration{1, 2, 3}) {
		t.Errorf("latencies %v, want pooled and sorted", m.lat)
	}
	// (300*10 + 100*50) / 400 = 20; (300*20 + 100*60) / 400 = 30; busy (1*1 + 0.5*3) / 4.
	if m.cost.client != 20*us || m.cost.server != 30*us || m.cost.behind != 40*us || m.cost.busy != 0.625 || !m.cost.behindKnown {
		t.Errorf("merged cost %+v", m.cost)
	}
}

// Alternate measures each side in turn, rounds times, on slices of the duration.
func TestAlternate(t *testing.T) {
	t.Parallel()
	var order []int
	c := config{duration: 4 * time.Second, warmup: time.Second}
	got, err := alternate(c, 4, func(c config, k int) (result, error) {
		if c.duration != time.Second || c.warmup != time.Second/4 {
			t.Errorf("slice of %s (+%s)", c.duration, c.warmup)
		}
		order = append(order, k)
		return result{deliveries: int64(10 * (k + 1)), elapsed: c.duration}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(order, []int{0, 1, 0, 1, 0, 1, 0, 1}) || got[0].deliveries != 40 || got[1].deliveries != 80 || got[1].elapsed != 4*time.Second {
		t.Errorf("order %v, merged %+v", order, got)
	}
}
