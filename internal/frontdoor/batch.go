package frontdoor

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// Forwards to one worker are coalesced under load. At most maxForwarding forwards of
// one tenant (and one object: a delivery holds one) are in flight at a time; the
// deliveries that arrive meanwhile wait, and the next forward carries all of them in one
// request (up to maxBatchBytes, and never more than the door's own --max-body-bytes,
// which a worker accepting what the door accepts accepts), their entries joined into one
// delivery. The worker
// commits them together and answers once, and each of their Meta requests gets that
// answer: 200 only once all are committed, else an error and Meta retries each (the
// worker absorbs what it already holds). Meta's deliveries come many at once, each a
// few hundred bytes: one HTTP exchange, one credential check and one commit for several
// of them costs the front door and the worker a fraction of one per delivery. A lone
// delivery never waits: coalescing only happens while forwards are in flight.
const (
	maxForwarding = 4
	maxBatchBytes = 1 << 20
)

// chunk is one delivery's parts for one tenant, as forwarded.
type chunk struct {
	parts []meta.Part
	// body is the chunk as one delivery: the delivery itself when it is wholly for the
	// tenant, else its parts' envelope.
	body []byte
	// entries is the content of body's entry array (meta.SplitRouting), nil if unknown:
	// what a joined forward is made of.
	entries  []byte
	deadline time.Time // the delivery's forward must be answered by then
}

// forwardBody is the delivery one forward of batch sends: a lone chunk's own body, else
// the chunks' entries joined (or, when one's entries are unknown, their parts' envelope).
func forwardBody(batch []*chunk) ([]byte, error) {
	if len(batch) == 1 {
		return batch[0].body, nil
	}
	entries := make([][]byte, 0, len(batch))
	var parts []meta.Part
	joinable := true
	for _, c := range batch {
		entries = append(entries, c.entries)
		parts = append(parts, c.parts...)
		joinable = joinable && c.entries != nil
	}
	if joinable {
		return meta.JoinEntries(batch[0].parts[0].Object, entries), nil
	}
	body, err := meta.Envelope(parts)
	if err != nil {
		return nil, fmt.Errorf("build forward: %w", err)
	}
	return body, nil
}

// waiter is a chunk waiting for (or leading) a forward.
type waiter struct {
	c    *chunk
	done chan error // the forward's result, or errLead
	// batch is what the waiter sends when told to lead: itself and those waiting after
	// it that fit, taken in one go by the forward that ended (were they left in the
	// queue, every forward ending meanwhile would start one with a few of them).
	batch []*waiter
}

// errLead tells a waiter that it sends the next forward itself.
var errLead = errors.New("lead the next forward")

// forwardQueue coalesces the forwards of one tenant and object.
type forwardQueue struct {
	maxBytes int // of a joined forward
	mu       sync.Mutex
	sending  int
	waiting  []*waiter
}

type queueKey struct {
	Target
	object string
}

// send forwards c, alone or with others, through post (which is given the chunks of
// one forward and their earliest deadline) and returns that forward's result, or a
// timeout error when c's deadline passed before any forward took it.
func (q *forwardQueue) send(c *chunk, post func(batch []*chunk, deadline time.Time) error) error {
	w := &waiter{c: c}
	var batch []*waiter
	q.mu.Lock()
	if q.sending >= maxForwarding {
		w.done = make(chan error, 1)
		q.waiting = append(q.waiting, w)
		q.mu.Unlock()
		if err := q.wait(w); !errors.Is(err, errLead) {
			return err
		}
		batch = w.batch // in the slot of the forward that ended
	} else {
		q.sending++
		batch = q.take(w)
		q.mu.Unlock()
	}
	chunks := make([]*chunk, len(batch))
	deadline := c.deadline
	for i, b := range batch {
		chunks[i] = b.c
		if b.c.deadline.Before(deadline) {
			deadline = b.c.deadline
		}
	}
	err := post(chunks, deadline)
	q.mu.Lock()
	var next *waiter
	if len(q.waiting) > 0 {
		next = q.waiting[0]
		q.waiting[0] = nil
		q.waiting = q.waiting[1:]
		next.batch = q.take(next)
	} else {
		q.sending--
	}
	q.mu.Unlock()
	if next != nil {
		next.done <- errLead
	}
	for _, b := range batch[1:] {
		b.done <- err
	}
	return err
}

// errQueueTimeout: the deadline of a delivery passed while it waited for a forward.
var errQueueTimeout = errors.New("no forward to the worker was free before the forward timeout")

// wait waits for w's result or its turn to lead; at its deadline it leaves the queue,
// unless a forward took it meanwhile (whose deadline is at most w's).
func (q *forwardQueue) wait(w *waiter) error {
	t := time.NewTimer(time.Until(w.c.deadline))
	defer t.Stop()
	select {
	case err := <-w.done:
		return err
	case <-t.C:
	}
	q.mu.Lock()
	if i := slices.Index(q.waiting, w); i >= 0 {
		q.waiting = slices.Delete(q.waiting, i, i+1)
		q.mu.Unlock()
		return errQueueTimeout
	}
	q.mu.Unlock()
	return <-w.done
}

// take returns lead and the waiting chunks that fit with it in one forward, in their
// order of arrival, and leaves the others waiting. Called with q.mu held.
func (q *forwardQueue) take(lead *waiter) []*waiter {
	batch := []*waiter{lead}
	size := len(lead.c.body)
	n := 0
	for _, w := range q.waiting {
		if size+len(w.c.body) > q.maxBytes {
			break
		}
		size += len(w.c.body)
		batch = append(batch, w)
		n++
	}
	clear(q.waiting[:n])
	q.waiting = q.waiting[n:]
	return batch
}
