// Command benchoperator measures the operator at scale from outside (make
// bench-operator): a real kube-apiserver and etcd (envtest binaries) with an
// audit log attributing every request to the operator's user, the manager
// binary run as its own process, N Tenants created at once and no kubelet.
// It prints the time to settle, the manager's memory, its writes at steady
// state and on restart, and, side by side, how long a raw client takes to
// create the same objects one after another. Not a test: it prints figures.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

type config struct {
	tenants     int
	window      time.Duration
	settleLimit time.Duration
	managerArgs []string
	managerEnv  []string
	managerBin  string
	profile     string
	pprof       bool
	raw         bool
	workerIdle  time.Duration
	work        string
}

func main() {
	var cfg config
	var extra, env string
	flag.IntVar(&cfg.tenants, "tenants", 1000, "Tenants created at once.")
	flag.DurationVar(&cfg.window, "window", 120*time.Second, "Steady-state window in which the operator's writes are counted.")
	flag.DurationVar(&cfg.settleLimit, "settle-limit", 30*time.Minute, "Give up when the Tenants have not settled after this long.")
	flag.StringVar(&cfg.managerBin, "manager", "", "A manager binary to measure instead of building ./cmd/manager (to compare two versions).")
	flag.StringVar(&cfg.profile, "heap-profile", "", "Save the manager's heap profile at the end of the steady window to this file.")
	flag.BoolVar(&cfg.pprof, "pprof", true, "Run the manager with its profiler on loopback, to measure its live heap after a forced collection (turn off for managers older than --pprof-bind-address).")
	flag.BoolVar(&cfg.raw, "raw", true, "Also time a raw sequential client creating the same objects (minutes at thousands of tenants; off to compare memory only).")
	flag.DurationVar(&cfg.workerIdle, "worker-idle", 30*time.Second, "How long a real worker is watched idle for requests besides its watches (0: not measured).")
	flag.StringVar(&env, "manager-env", "", "Extra environment of the manager only, space-separated KEY=VALUE (e.g. \"GOMEMLIMIT=200MiB\", as a container limit would set it).")
	flag.StringVar(&extra, "manager-args", "", "Extra flags for the manager, space-separated (e.g. \"--max-concurrent-reconciles=1\").")
	flag.Parse()
	cfg.managerArgs = splitArgs(extra)
	cfg.managerEnv = splitArgs(env)
	work, err := os.MkdirTemp(os.Getenv("BENCH_TMPDIR"), "omniflow-bench-operator-")
	if err != nil {
		fail(err)
	}
	cfg.work = work
	defer func() { _ = os.RemoveAll(work) }()
	// Ctrl-C still stops the control plane and the manager.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg)
	stop()
	if err != nil {
		_ = os.RemoveAll(work)
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench-operator:", err)
	os.Exit(1)
}

// result is one run's figures.
type result struct {
	tenants          int
	settle           time.Duration
	settleWrites     writeCount
	rssSettled       uint64
	rssSteady        uint64
	heapInuse        float64
	heapLive         float64
	steadyWrites     writeCount
	window           time.Duration
	restartWrites    writeCount
	restartConverge  time.Duration
	rssRestarted     uint64
	rawProvisioning  time.Duration
	rawObjectsPerTen int
	loadavg          string
	kinds            []kindCost
	worker           *workerIdle
}

func run(ctx context.Context, cfg config) error {
	cp, err := startControlPlane(cfg.work)
	if err != nil {
		return err
	}
	defer cp.stop()
	bin := cfg.managerBin
	if bin == "" {
		bin = filepath.Join(cfg.work, "manager")
		fmt.Println("building the manager...")
		if err := goBuild(bin, "./cmd/manager"); err != nil {
			return err
		}
	}
	res := result{tenants: cfg.tenants, window: cfg.window}

	if cfg.profile != "" && !cfg.pprof {
		return fmt.Errorf("--heap-profile needs --pprof")
	}
	mgr, err := startManager(bin, cp.kubeconfig, cfg.work, "run1", cfg.pprof, cfg.managerArgs, cfg.managerEnv)
	if err != nil {
		return err
	}
	defer func() { mgr.stop() }()
	if err := mgr.waitReady(ctx, 2*time.Minute); err != nil {
		return err
	}
	fmt.Printf("creating %d Tenants at once...\n", cfg.tenants)
	start := time.Now()
	if err := createTenants(ctx, cp.env.Client, cfg.tenants); err != nil {
		return err
	}
	if err := waitSettled(ctx, cp.env.Client, cfg.tenants, cfg.settleLimit); err != nil {
		return err
	}
	settledAt := time.Now()
	res.settle = settledAt.Sub(start)
	if res.settleWrites, err = cp.audit.writesBetween(start, settledAt); err != nil {
		return err
	}
	fmt.Printf("settled after %s\n", res.settle.Round(100*time.Millisecond))
	// Let the last status writes and their watch events pass before the window.
	if err := mgr.waitIdle(ctx, cfg.tenants, 5*time.Minute); err != nil {
		return err
	}
	if res.rssSettled, err = mgr.rss(); err != nil {
		return err
	}
	if res.heapInuse, err = mgr.metric(ctx, "go_memstats_heap_inuse_bytes"); err != nil {
		return err
	}
	if cfg.pprof {
		// What the manager really holds: what survives a collection, without
		// the garbage of the last passes that the collector has not yet
		// reached (heap in use counts both).
		if err := mgr.heapProfile(ctx, os.DevNull, true); err != nil {
			return err
		}
		if res.heapLive, err = mgr.metric(ctx, "go_memstats_heap_alloc_bytes"); err != nil {
			return err
		}
	}
	// Printed as measured: a long run stopped early keeps what it found.
	fmt.Printf("settled and idle: RSS %d MiB, heap in use %.0f MiB, live heap after a collection %.0f MiB\n",
		res.rssSettled>>20, res.heapInuse/(1<<20), res.heapLive/(1<<20))
	if res.kinds, err = measureKinds(ctx, cp.env.Client); err != nil {
		return err
	}

	fmt.Printf("counting the operator's writes over %s of steady state...\n", cfg.window)
	from := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(cfg.window):
	}
	if res.steadyWrites, err = cp.audit.writesBetween(from, time.Now()); err != nil {
		return err
	}
	if res.rssSteady, err = mgr.rss(); err != nil {
		return err
	}
	fmt.Printf("window: %s writes, RSS %d MiB\n", res.steadyWrites, res.rssSteady>>20)
	if cfg.profile != "" {
		if err := mgr.heapProfile(ctx, cfg.profile, true); err != nil {
			return err
		}
		fmt.Printf("heap profile: %s (go tool pprof -top -inuse_space %s)\n", cfg.profile, cfg.profile)
	}

	fmt.Println("restarting the manager...")
	mgr.stop()
	restartAt := time.Now()
	mgr, err = startManager(bin, cp.kubeconfig, cfg.work, "run2", cfg.pprof, cfg.managerArgs, cfg.managerEnv)
	if err != nil {
		return err
	}
	if err := mgr.waitIdle(ctx, cfg.tenants, 10*time.Minute); err != nil {
		return err
	}
	res.restartConverge = time.Since(restartAt)
	if res.rssRestarted, err = mgr.rss(); err != nil {
		return err
	}
	// Writes up to convergence plus a short tail: a write would follow the
	// pass that decided it within milliseconds.
	time.Sleep(2 * time.Second)
	if res.restartWrites, err = cp.audit.writesBetween(restartAt, time.Now()); err != nil {
		return err
	}
	fmt.Printf("restart: converged in %s, %s writes, RSS %d MiB\n", res.restartConverge.Round(100*time.Millisecond), res.restartWrites, res.rssRestarted>>20)
	mgr.stop()

	if cfg.workerIdle > 0 {
		// After the operator's figures: the worker's start would make the
		// operator work (its reports), not part of the operator's steady state.
		fmt.Printf("watching a real worker idle for %s...\n", cfg.workerIdle)
		w, err := measureIdleWorker(ctx, cp, cfg.work, cfg.workerIdle)
		if err != nil {
			return err
		}
		res.worker = &w
		printWorker(w)
	}
	if cfg.raw {
		fmt.Println("provisioning the same objects with a raw sequential client...")
		res.rawProvisioning, res.rawObjectsPerTen, err = rawProvision(ctx, cp.env.Client, cfg.tenants)
		if err != nil {
			return err
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.loadavg = string(b)
	}
	printResult(res)
	return nil
}

func createTenants(ctx context.Context, c client.Client, n int) error {
	const parallel = 16
	errs := make(chan error, parallel)
	next := make(chan int)
	for range parallel {
		go func() {
			var first error
			for i := range next {
				t := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: tenantName(i)}}
				if err := c.Create(ctx, t); err != nil && first == nil {
					first = fmt.Errorf("create tenant %s: %w", t.Name, err)
				}
			}
			errs <- first
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	var first error
	for range parallel {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func tenantName(i int) string { return fmt.Sprintf("bench-%05d", i) }

// settledConditions are the conditions a Tenant reports once the operator
// has done all it can without a kubelet: the claim stays Pending and the
// Deployment unobserved, but every phase has run for the current generation.
var settledConditions = []string{
	platformv1.ConditionNamespaceReady, platformv1.ConditionStorageReady,
	platformv1.ConditionWorkerReady, platformv1.ConditionRouteReady, platformv1.ConditionReady,
}

func settled(t *platformv1.Tenant) bool {
	if t.Status.ObservedGeneration != t.Generation {
		return false
	}
	for _, typ := range settledConditions {
		c := meta.FindStatusCondition(t.Status.Conditions, typ)
		if c == nil || c.ObservedGeneration != t.Generation {
			return false
		}
	}
	return true
}

func waitSettled(ctx context.Context, c client.Client, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	last := -1
	for {
		var list platformv1.TenantList
		if err := c.List(ctx, &list); err != nil {
			return fmt.Errorf("list tenants: %w", err)
		}
		done := 0
		for i := range list.Items {
			if settled(&list.Items[i]) {
				done++
			}
		}
		if done >= n {
			return nil
		}
		if done != last && done/100 != last/100 {
			fmt.Printf("  %d/%d settled\n", done, n)
		}
		last = done
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d tenants settled within %s", done, n, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func printResult(r result) {
	mib := func(b float64) string { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }
	fmt.Println()
	fmt.Println("| tenants | time to settle | writes to settle | manager RSS settled | RSS after the window | heap in use | live heap after a collection | writes at steady state | writes on restart | restart converges | RSS after restart | raw sequential client |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	fmt.Printf("| %d | %s | %s | %s | %s | %s | %s | %s (%s) | %s | %s | %s | %s (%d objects/tenant) |\n",
		r.tenants, r.settle.Round(100*time.Millisecond), r.settleWrites, mib(float64(r.rssSettled)), mib(float64(r.rssSteady)), mib(r.heapInuse), mib(r.heapLive),
		r.steadyWrites, r.window, r.restartWrites, r.restartConverge.Round(100*time.Millisecond),
		mib(float64(r.rssRestarted)), r.rawProvisioning.Round(100*time.Millisecond), r.rawObjectsPerTen)
	printKinds(r.kinds)
	if r.worker != nil {
		fmt.Println()
		printWorker(*r.worker)
	}
	fmt.Printf("\nloadavg: %s", r.loadavg)
}

func printWorker(w workerIdle) {
	if w.skipped != "" {
		fmt.Printf("idle worker: not measured: %s\n", w.skipped)
		return
	}
	fmt.Printf("idle worker (%s, as its ServiceAccount): %d requests besides its watches in its start (until %s after Ready); then %d in %s idle (%.3f/s) %v\n",
		w.tenant, w.atStart, workerStartTail, len(w.others), w.window, w.rate, w.others)
}
