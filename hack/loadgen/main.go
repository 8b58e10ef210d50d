// Command loadgen measures the ingest worker's durable path against a verify-only
// baseline, side by side in one run: signed WhatsApp deliveries (batches of 1 and 10
// messages) from N concurrent clients, loopback only, bounded in time and count. With
// --frontdoor it also measures the same durable worker reached through the webhook front
// door, against the direct phase.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

type config struct {
	durable, baseline string
	// frontdoor is the base URL of a front door routing the channel's number to the
	// durable worker; empty skips that phase.
	frontdoor        string
	channel, secret  string
	phoneNumberID    string
	clients          int
	batches          []int
	duration, warmup time.Duration
	maxDeliveries    int64
	users            int64
	// Process ids of the workers, to report their CPU per delivery (0: not reported).
	durablePID, baselinePID int
	frontdoorPID            int
	// frontdoorOwnCore: the front door runs on cores of its own (bench.sh PIN=1).
	frontdoorOwnCore bool
	// frontdoorRounds > 1 compares the front door with the direct path in that many
	// alternating slices of each.
	frontdoorRounds int
	// encryptionRounds: the encryption phase runs this many pairs of phases per batch
	// size, alternating which of the two workers goes first.
	encryptionRounds int
	media            mediaConfig
	encryption       encryptionConfig
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "media-server" {
		fs := flag.NewFlagSet("media-server", flag.ExitOnError)
		listen := fs.String("listen", "127.0.0.1:0", "loopback address to serve on")
		token := fs.String("token", "bench-media-token", "the access token accepted")
		_ = fs.Parse(os.Args[2:])
		fail(serveMedia(*listen, *token, os.Stdout))
	}
	if len(os.Args) > 1 && os.Args[1] == "data-key" {
		if err := writeDataKey(os.Stdout); err != nil {
			fail(err)
		}
		return
	}
	var c config
	var batches string
	flag.StringVar(&c.durable, "target", "", "base URL of the durable worker (loopback only)")
	flag.StringVar(&c.baseline, "baseline", "", "base URL of the verify-only baseline worker (loopback only)")
	flag.StringVar(&c.frontdoor, "frontdoor", "", "base URL of a front door routing the channel's number to the durable worker (loopback only; optional)")
	flag.IntVar(&c.frontdoorPID, "frontdoor-pid", 0, "pid of the front door, to report its CPU per delivery (optional)")
	flag.IntVar(&c.encryptionRounds, "encryption-rounds", 2, "pairs of phases per batch size in the encryption phase, the worker without the key first in odd pairs and second in even ones (2: off, on, on, off)")
	flag.IntVar(&c.frontdoorRounds, "frontdoor-rounds", 1, "compare the front door with the direct path in this many alternating slices of the phase's duration each (direct, door, direct, door...), so that a change of the machine's load between phases weighs on both alike")
	flag.BoolVar(&c.frontdoorOwnCore, "frontdoor-own-core", false, "the front door runs on cores of its own (pinned apart from the workers and this load generator): its CPU is left out of the ratio's CPU bound")
	flag.StringVar(&c.channel, "channel", "wa", "channel name in the webhook path")
	flag.StringVar(&c.secret, "secret", "bench_app_secret", "app secret to sign with")
	flag.StringVar(&c.phoneNumberID, "phone-number-id", "123456789012345", "metadata.phone_number_id of the channel")
	flag.IntVar(&c.clients, "clients", 64, "concurrent clients")
	flag.StringVar(&batches, "batches", "1,10", "messages per delivery, one phase per value")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "measured time per phase")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured warm-up per phase")
	flag.Int64Var(&c.maxDeliveries, "max-deliveries", 300000, "stop a phase after this many deliveries")
	flag.Int64Var(&c.users, "users", 5000, "distinct customers the deliveries come from (conversations repeat, as in real traffic)")
	flag.IntVar(&c.durablePID, "target-pid", 0, "pid of the durable worker, to report its CPU per delivery (optional)")
	flag.IntVar(&c.baselinePID, "baseline-pid", 0, "pid of the baseline worker, to report its CPU per delivery (optional)")
	flag.StringVar(&c.media.server, "media", "", "base URL of `loadgen media-server` (the channel's graphAPIBaseURL): runs the media phases (loopback only; optional)")
	flag.StringVar(&c.media.token, "media-token", "bench-media-token", "the channel's access token, as the media server accepts it")
	flag.IntVar(&c.media.size, "media-size", 32<<10, "bytes per file in the media webhook phase")
	flag.Int64Var(&c.media.maxDeliveries, "media-max-deliveries", 5000, "cap of the text and media webhook phases (each delivery's file is stored)")
	flag.IntVar(&c.media.fetchFiles, "fetch-files", 200, "files of the fetch throughput phase")
	flag.IntVar(&c.media.fetchSize, "fetch-size", 1<<20, "bytes per file of the fetch throughput phase")
	flag.IntVar(&c.media.concurrency, "media-concurrency", 4, "the worker's --media-concurrency, used by the plain download too")
	flag.StringVar(&c.encryption.clear, "clear", "", "base URL of a durable worker without a data key, on a store of its own: runs the encryption phase with --sealed (loopback only; optional)")
	flag.IntVar(&c.encryption.clearPID, "clear-pid", 0, "pid of the --clear worker, to report its CPU per delivery (optional)")
	flag.StringVar(&c.encryption.sealed, "sealed", "", "base URL of the same durable worker with --data-key-file, on a store of its own (loopback only; optional)")
	flag.IntVar(&c.encryption.sealedPID, "sealed-pid", 0, "pid of the --sealed worker (optional)")
	flag.Parse()
	for _, b := range strings.Split(batches, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(b))
		if err != nil || n < 1 || n > 1000 {
			fail(fmt.Errorf("--batches: %q is not a batch size 1..1000", b))
		}
		c.batches = append(c.batches, n)
	}
	targets := []string{c.durable, c.baseline}
	if c.frontdoor != "" {
		targets = append(targets, c.frontdoor)
	}
	if c.media.server != "" {
		targets = append(targets, c.media.server)
	}
	if (c.encryption.clear == "") != (c.encryption.sealed == "") {
		fail(fmt.Errorf("--clear and --sealed: give both or neither"))
	}
	if c.encryption.clear != "" {
		targets = append(targets, c.encryption.clear, c.encryption.sealed)
	}
	for _, u := range targets {
		if err := loopbackOnly(u); err != nil {
			fail(err)
		}
	}
	if err := run(c, os.Stdout); err != nil {
		fail(err)
	}
}

// frontdoorVerdict compares the front door phase with the direct durable phase: the
// front door must keep at least 0.8 of the direct throughput, with a p99 at most twice
// the direct one, and no errors.
func frontdoorVerdict(direct, fd result) (bool, string) {
	ratio := fd.rate() / direct.rate()
	p99, limit := fd.pct(0.99), 2*direct.pct(0.99)
	ok := ratio >= 0.8 && p99 <= limit && fd.errors == 0
	return ok, fmt.Sprintf("ratio frontdoor/direct %.2f (target >= 0.80: %s), frontdoor p99 %s (target <= 2 x direct = %s: %s)",
		ratio, yesNo(ratio >= 0.8), p99.Round(10*time.Microsecond), limit.Round(10*time.Microsecond), yesNo(p99 <= limit))
}

func perDelivery(d time.Duration, known bool) string {
	if !known {
		return "-"
	}
	return d.Round(time.Microsecond).String()
}

// budget explains a ratio by CPU: when both phases keep the machine busy, throughput is
// the machine's CPU divided by the CPU one delivery costs (client plus worker), so a
// ratio r needs the durable worker to spend at most (client+baseline)/r - client.
func budget(b, d cost, r float64) string {
	limit := time.Duration(float64(b.client+b.server)/r) - d.client
	return fmt.Sprintf("CPU per delivery: client %s + baseline worker %s; for a ratio of %.2f the durable worker may spend %s, it spent %s (machine busy %.0f%% / %.0f%%)",
		b.client.Round(time.Microsecond), b.server.Round(time.Microsecond), r, limit.Round(time.Microsecond),
		d.server.Round(time.Microsecond), 100*b.busy, 100*d.busy)
}

// doorBudget explains the front door's ratio by CPU: when client, door and worker share
// the machine's cores and keep them busy, throughput is the CPU divided by what one
// delivery costs all of them, so the ratio cannot exceed (client + worker) direct over
// (client + door + worker) through the door, whatever the latencies. With the door on
// cores of its own (ownCore: bench.sh PIN=1, or a cluster), client and worker share the
// rest: the bound is (client + worker) direct over (client + worker) through the door.
func doorBudget(direct, fd cost, ownCore bool) string {
	through, where := fd.client+fd.server+fd.behind, "sharing the cores"
	if ownCore {
		through, where = fd.client+fd.behind, "the door on a core of its own"
	}
	bound := float64(direct.client+direct.server) / float64(through)
	return fmt.Sprintf("CPU per delivery: direct client %s + worker %s; through the front door client %s + door %s + worker %s (machine busy %.0f%% / %.0f%%): %s, the ratio is at most %.2f",
		direct.client.Round(time.Microsecond), direct.server.Round(time.Microsecond), fd.client.Round(time.Microsecond),
		fd.server.Round(time.Microsecond), fd.behind.Round(time.Microsecond), 100*direct.busy, 100*fd.busy, where, bound)
}

// The serial stage's targets: single-message deliveries keep at least 0.6 of the
// verify-only baseline's rate, and batches of 10 carry at least 4 times as many messages
// per second as single-message deliveries carry deliveries.
const (
	batch1Target   = 0.60
	batch10Target  = 4.0
	budgetRatioAny = 0.50 // the ratio the CPU budget is explained against for other batch sizes
)

// serialVerdict states the targets over the durable and baseline phases by batch size
// (index 0 baseline, 1 durable); a target whose batch size was not run is not judged.
func serialVerdict(pairs map[int][]result) (bool, string) {
	one, ok1 := pairs[1]
	ten, ok10 := pairs[10]
	if !ok1 {
		return true, "batch-1 ratio and batch-10 messages/s: not judged (run --batches 1,10)"
	}
	ratio := one[1].rate() / one[0].rate()
	ok := ratio >= batch1Target
	line := fmt.Sprintf("batch-1 ratio durable/baseline %.2f (target >= %.2f: %s)", ratio, batch1Target, yesNo(ratio >= batch1Target))
	if ok10 {
		mult := ten[1].rate() * 10 / one[1].rate()
		ok = ok && mult >= batch10Target
		line += fmt.Sprintf("; durable batch-10 messages/s / batch-1 deliveries/s = %.0f / %.0f = %.1f (target >= %.0f: %s)",
			ten[1].rate()*10, one[1].rate(), mult, batch10Target, yesNo(mult >= batch10Target))
	}
	return ok, line
}

func yesNo(b bool) string {
	if b {
		return "met"
	}
	return "NOT met"
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadgen:", err)
	os.Exit(1)
}

// loopbackOnly refuses any target that is not this machine: a load test must never
// send traffic anywhere else.
func loopbackOnly(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return fmt.Errorf("target %q: want http://127.0.0.1:PORT", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("target %q is not a loopback address", raw)
	}
	return nil
}

type result struct {
	name       string
	batch      int
	deliveries int64
	errors     int64
	elapsed    time.Duration
	lat        []time.Duration
	cost       cost
	// acked counts every delivery answered 200, warm-up and probe included (what the
	// worker stored).
	acked int64
}

func (r result) rate() float64 { return float64(r.deliveries) / r.elapsed.Seconds() }

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(float64(len(r.lat))*p))]
}

func run(c config, out io.Writer) error {
	transport := &http.Transport{MaxIdleConnsPerHost: c.clients * 2, MaxConnsPerHost: c.clients * 2, DisableCompression: true}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	fmt.Fprintf(out, "loadgen: %d clients, %s per phase (+%s warm-up), at most %d deliveries per phase\n\n",
		c.clients, c.duration, c.warmup, c.maxDeliveries)
	fmt.Fprintf(out, "%-9s %5s %12s %12s %9s %9s %7s %10s %10s %5s\n", "target", "batch", "deliveries/s", "messages/s", "p50", "p99", "errors",
		"client-cpu", "worker-cpu", "busy")
	var seq atomic.Int64
	seq.Store(time.Now().UnixNano()) // unique message ids across runs against one store
	verdict := true
	pairs := map[int][]result{}
	direct := func(base string) string { return strings.TrimSuffix(base, "/") + "/webhooks/meta/" + c.channel }
	for _, batch := range c.batches {
		type target struct {
			name, url   string
			pid, behind int
		}
		targets := []target{{"baseline", direct(c.baseline), c.baselinePID, 0}, {"durable", direct(c.durable), c.durablePID, 0}}
		if c.frontdoor != "" {
			// The durable worker's CPU is sampled too: through the door it is a third
			// process sharing the machine.
			targets = append(targets, target{"frontdoor", strings.TrimSuffix(c.frontdoor, "/") + "/webhooks/meta", c.frontdoorPID, c.durablePID})
		}
		pair := make([]result, len(targets))
		row := func(r result) {
			fmt.Fprintf(out, "%-9s %5d %12.0f %12.0f %9s %9s %7d %10s %10s %4.0f%%\n", r.name, batch, r.rate(), r.rate()*float64(batch),
				r.pct(0.50).Round(10*time.Microsecond), r.pct(0.99).Round(10*time.Microsecond), r.errors,
				perDelivery(r.cost.client, true), perDelivery(r.cost.server, r.cost.serverKnown), 100*r.cost.busy)
		}
		for i, t := range targets {
			if i == 2 && c.frontdoorRounds > 1 {
				// Alternating slices: the comparison's own direct phase replaces the
				// durable one.
				rs, err := alternate(c, c.frontdoorRounds, func(c config, k int) (result, error) {
					t := targets[1+k]
					return phase(c, client, t.url, t.pid, t.behind, batch, &seq)
				})
				if err != nil {
					return fmt.Errorf("front door batch %d: %w", batch, err)
				}
				rs[0].name, rs[1].name = "direct~", "frontdoor"
				row(rs[0])
				row(rs[1])
				pair = []result{pair[0], pair[1], rs[0], rs[1]}
				break
			}
			r, err := phase(c, client, t.url, t.pid, t.behind, batch, &seq)
			if err != nil {
				return fmt.Errorf("%s batch %d: %w", t.name, batch, err)
			}
			r.name = t.name
			pair[i] = r
			row(r)
		}
		pairs[batch] = pair
		ratio := pair[1].rate() / pair[0].rate()
		p99 := pair[1].pct(0.99)
		ok := p99 < 100*time.Millisecond && pair[1].errors == 0
		verdict = verdict && ok
		fmt.Fprintf(out, "batch %d: ratio durable/baseline %.2f, durable p99 %s (target < 100ms: %s), durable errors %d\n\n",
			batch, ratio, p99.Round(10*time.Microsecond), yesNo(p99 < 100*time.Millisecond), pair[1].errors)
		if b, d := pair[0].cost, pair[1].cost; b.serverKnown && d.serverKnown {
			r := budgetRatioAny
			if batch == 1 {
				r = batch1Target
			}
			fmt.Fprintf(out, "batch %d: %s\n\n", batch, budget(b, d, r))
		}
		if len(pair) >= 3 {
			direct, fd := pair[len(pair)-2], pair[len(pair)-1]
			ok, line := frontdoorVerdict(direct, fd)
			verdict = verdict && ok
			if len(pair) == 4 {
				line += fmt.Sprintf(" (against the direct path in %d alternating slices)", c.frontdoorRounds)
			}
			fmt.Fprintf(out, "batch %d: %s\n\n", batch, line)
			if d, f := direct.cost, fd.cost; d.serverKnown && f.serverKnown && f.behindKnown {
				fmt.Fprintf(out, "batch %d: %s\n\n", batch, doorBudget(d, f, c.frontdoorOwnCore))
			}
		}
	}
	ok, line := serialVerdict(pairs)
	verdict = verdict && ok
	fmt.Fprintf(out, "serial stage: %s\n", line)
	if c.media.server != "" {
		ok, err := mediaPhases(c, client, out, &seq)
		if err != nil {
			return fmt.Errorf("media: %w", err)
		}
		verdict = verdict && ok
	}
	if c.encryption.clear != "" {
		ok, err := encryptionPhases(c, client, out, &seq)
		if err != nil {
			return fmt.Errorf("encryption: %w", err)
		}
		verdict = verdict && ok
	}
	fmt.Fprintf(out, "overall: %s\n", map[bool]string{true: "targets met", false: "targets NOT met"}[verdict])
	return nil
}
