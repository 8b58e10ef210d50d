package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
)

// The encryption phase (issue 17): the same durable SQLite worker with encryption at
// rest off and on, side by side in one run, each on a store of its own: at batch 1 and
// batch 10 the worker with its key must keep at least 0.9 of the throughput without.

// encryptionTarget is the least on/off throughput ratio.
const encryptionTarget = 0.90

// encryptionConfig are the encryption phase's workers; empty URLs skip it.
type encryptionConfig struct {
	clear, sealed       string // base URLs of the worker without and with --data-key-file
	clearPID, sealedPID int
}

// writeDataKey prints a new tenant ring as the worker's --data-key-file reads it (the
// key Secret's data, as `kubectl get secret -o jsonpath='{.data}'` shows it).
func writeDataKey(out io.Writer) error {
	data, err := datakey.NewSecretData(rand.Reader, nil)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(data)
}

// metaMessageID is a message id shaped like Meta's: "wamid." and the base64 of a record
// holding the customer's number, then a random part (the shape of the fixtures'
// ids, docs/encryption.md). Ids that do not sort in arrival order, so that the store's
// message-id index is written all over in both phases, as it is in production, but
// one customer's ids sort together in clear, as Meta's do. (The
// serial stage's sequential ids all append at the index's end, which a keyed hash, by
// design, never does: a comparison on them would charge the hash for the ids' order.)
func metaMessageID(user, id int64, i int) string {
	x := splitmix64(uint64(id)*1000 + uint64(i)) //nolint:gosec // G115: a positive sequence number
	digits := strconv.AppendInt(nil, user, 10)
	raw := append([]byte{0x1c, 0x18, byte(len(digits))}, digits...)
	raw = append(raw, 0x15, 0x02, 0x00, 0x12, 0x18, 0x14)
	raw = fmt.Appendf(raw, "%020X", x)
	raw = append(raw, 0)
	return "wamid." + base64.StdEncoding.EncodeToString(raw)
}

// splitmix64 is a cheap, well-spread permutation of x.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// encryptionPhases runs, per batch size, encryptionRounds pairs off / on, on / off, ...
// (so that a machine getting busier, or a store growing, weighs on both alike) and
// judges the ratio of the sums.
func encryptionPhases(c config, client *http.Client, out io.Writer, seq *atomic.Int64) (bool, error) {
	fmt.Fprintf(out, "\nencryption at rest: the durable worker without and with its data key, each on its own store\n")
	endpoint := func(base string) string { return strings.TrimSuffix(base, "/") + "/webhooks/meta/" + c.channel }
	verdict := true
	var lines []string
	for _, batch := range c.batches {
		byName := map[string][]result{}
		type worker struct {
			name, url string
			pid       int
		}
		off, on := worker{"clear", c.encryption.clear, c.encryption.clearPID}, worker{"sealed", c.encryption.sealed, c.encryption.sealedPID}
		var order []worker
		for r := range max(c.encryptionRounds, 1) {
			if r%2 == 0 {
				order = append(order, off, on)
			} else {
				order = append(order, on, off)
			}
		}
		for _, t := range order {
			r, err := phaseOf(c, client, endpoint(t.url), t.pid, 0, batch, func() []byte {
				return bodyWithIDs(c.phoneNumberID, batch, c.users, seq, true, metaMessageID)
			})
			if err != nil {
				return false, fmt.Errorf("%s batch %d: %w", t.name, batch, err)
			}
			r.name = t.name
			byName[t.name] = append(byName[t.name], r)
			fmt.Fprintf(out, "%-9s %5d %12.0f %12.0f %9s %9s %7d %10s %10s %4.0f%%\n", r.name, batch, r.rate(), r.rate()*float64(batch),
				r.pct(0.50).Round(10*time.Microsecond), r.pct(0.99).Round(10*time.Microsecond), r.errors,
				perDelivery(r.cost.client, true), perDelivery(r.cost.server, r.cost.serverKnown), 100*r.cost.busy)
		}
		offR, onR := merge(byName["clear"]), merge(byName["sealed"])
		ok, line := encryptionVerdict(batch, offR, onR)
		verdict = verdict && ok
		lines = append(lines, line)
	}
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	return verdict, nil
}

// encryptionVerdict judges one batch size: on/off throughput at least encryptionTarget,
// and no errors with the key.
func encryptionVerdict(batch int, off, on result) (bool, string) {
	ratio := on.rate() / off.rate()
	ok := ratio >= encryptionTarget && on.errors == 0
	return ok, fmt.Sprintf("encryption batch %d: %.0f deliveries/s with the key, %.0f without: ratio on/off %.2f (target >= %.2f: %s), errors with the key %d",
		batch, on.rate(), off.rate(), ratio, encryptionTarget, yesNo(ratio >= encryptionTarget), on.errors)
}
