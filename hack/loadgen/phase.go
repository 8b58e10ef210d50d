package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// phase runs clients against one endpoint: warm-up, then measurement until the duration
// or the delivery cap is reached. The CPU of process pid (the server under test) and of
// behind (a worker behind it; 0: none) is reported per delivery.
func phase(c config, client *http.Client, endpoint string, pid, behind, batch int, seq *atomic.Int64) (result, error) {
	return phaseOf(c, client, endpoint, pid, behind, batch, func() []byte { return body(c.phoneNumberID, batch, c.users, seq) })
}

// phaseOf is phase with the deliveries gen makes (batch is only reported).
func phaseOf(c config, client *http.Client, endpoint string, pid, behind, batch int, gen func() []byte) (result, error) {
	// Check the target answers a signed delivery before loading it.
	if code, err := send(client, endpoint, []byte(c.secret), gen()); err != nil || code != 200 {
		return result{}, fmt.Errorf("probe: status %d, %v", code, err) //nolint:errorlint // err is nil when the status is the failure
	}
	var measuring atomic.Bool
	var count, errs atomic.Int64
	acked := atomic.Int64{}
	acked.Add(1) // the probe
	lats := make([][]time.Duration, c.clients)
	var wg sync.WaitGroup
	warmEnd := time.Now().Add(c.warmup)
	end := warmEnd.Add(c.duration)
	// CPU is sampled over the measured window only, like the latencies.
	var before, after usage
	sampled := make(chan struct{})
	go func() {
		time.Sleep(time.Until(warmEnd))
		before = sample(pid, behind)
		close(sampled)
	}()
	for i := range c.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for {
				now := time.Now()
				if now.After(end) || count.Load() >= c.maxDeliveries {
					break
				}
				if !measuring.Load() && now.After(warmEnd) {
					measuring.Store(true)
				}
				b := gen()
				start := time.Now()
				code, err := send(client, endpoint, []byte(c.secret), b)
				d := time.Since(start)
				if err == nil && code == http.StatusOK {
					acked.Add(1)
				}
				if !start.After(warmEnd) {
					continue
				}
				if err != nil || code != http.StatusOK {
					errs.Add(1)
					continue
				}
				count.Add(1)
				local = append(local, d)
			}
			lats[i] = local
		}()
	}
	wg.Wait()
	<-sampled
	after = sample(pid, behind)
	elapsed := time.Since(warmEnd)
	if e := time.Until(end); e > 0 { // stopped by the count cap
		elapsed = c.duration - e
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	if len(all) == 0 {
		return result{}, errors.New("no successful delivery measured")
	}
	n := count.Load()
	return result{batch: batch, deliveries: n, errors: errs.Load(), elapsed: elapsed, lat: all, cost: costOf(before, after, n+errs.Load(), pid, behind),
		acked: acked.Load()}, nil
}

// alternate runs measure(c, 0) and measure(c, 1) in turn, rounds times each, with the
// duration and warm-up split between the rounds, and returns each one's slices merged.
func alternate(c config, rounds int, measure func(c config, k int) (result, error)) ([2]result, error) {
	slice := c
	slice.duration = c.duration / time.Duration(rounds)
	slice.warmup = c.warmup / time.Duration(rounds)
	var parts [2][]result
	for range rounds {
		for k := range 2 {
			r, err := measure(slice, k)
			if err != nil {
				return [2]result{}, err
			}
			parts[k] = append(parts[k], r)
		}
	}
	return [2]result{merge(parts[0]), merge(parts[1])}, nil
}

// merge sums slices of one measurement: deliveries, errors and time add up, latencies
// pool, and the CPU per delivery and the machine's busy share are averaged by weight.
func merge(rs []result) result {
	var m result
	var n int64
	var busy float64
	for _, r := range rs {
		w := r.deliveries + r.errors
		m.batch = r.batch
		m.deliveries += r.deliveries
		m.errors += r.errors
		m.elapsed += r.elapsed
		m.acked += r.acked
		m.lat = append(m.lat, r.lat...)
		m.cost.client += r.cost.client * time.Duration(w)
		m.cost.server += r.cost.server * time.Duration(w)
		m.cost.behind += r.cost.behind * time.Duration(w)
		m.cost.serverKnown, m.cost.behindKnown = r.cost.serverKnown, r.cost.behindKnown
		busy += r.cost.busy * r.elapsed.Seconds()
		n += w
	}
	if n > 0 {
		m.cost.client /= time.Duration(n)
		m.cost.server /= time.Duration(n)
		m.cost.behind /= time.Duration(n)
	}
	if m.elapsed > 0 {
		m.cost.busy = busy / m.elapsed.Seconds()
	}
	slices.Sort(m.lat)
	return m
}

func send(client *http.Client, endpoint string, secret, b []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(b))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(meta.SignatureHeader, meta.Sign(secret, b))
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// body builds a realistic WhatsApp delivery (the sender's contact, n text messages) with
// fresh wamids so that every message is new to the store; senders come from a pool of
// users customers, each with a stable profile name.
func body(phoneNumberID string, n int, users int64, seq *atomic.Int64) []byte {
	return bodyWithIDs(phoneNumberID, n, users, seq, false, func(_ int64, id int64, i int) string { return fmt.Sprintf("wamid.LOAD%dx%d", id, i) })
}

// bodyWithIDs is body with the message ids msgID makes (of the user, the delivery's
// sequence number and the message's index). Senders take turns in the order of their
// numbers, or, scattered, in no order, as customers write (consecutive deliveries then
// never come from neighbouring numbers).
func bodyWithIDs(phoneNumberID string, n int, users int64, seq *atomic.Int64, scattered bool, msgID func(user, id int64, i int) string) []byte {
	id := seq.Add(1)
	k := uint64(id) //nolint:gosec // G115: a positive sequence number
	if scattered {
		k = splitmix64(k)
	}
	user := 447700000000 + int64(k%uint64(max(users, 1))) //nolint:gosec // G115: below users
	var b bytes.Buffer
	b.Grow(600 + 220*n)
	fmt.Fprintf(&b, `{"object":"whatsapp_business_account","entry":[{"id":"109876543210987","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001234","phone_number_id":%q},"contacts":[{"profile":{"name":"Customer %d"},"wa_id":"%d"}],"messages":[`, phoneNumberID, user%100000, user)
	ts := time.Now().Unix()
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"from":"%d","id":%q,"timestamp":"%d","type":"text","text":{"body":"Hello, is my order %d shipped yet? Message %d of a benchmark batch."}}`, user, msgID(user, id, i), ts, id, i)
	}
	b.WriteString(`]},"field":"messages"}]}]}`)
	return b.Bytes()
}
