// Command bench-erasure measures erasure at scale on both store backends (make
// bench-erasure; docs/erasure-at-scale.md): the cost of erasing one person against one
// indexed single-row delete in stores of growing size, ingest latency while a large
// erasure and a retention run delete at scale, the time to erase a whole tenant (its
// SQLite directory, its PostgreSQL database) small and large, and the query-plan check.
// Not a test: it prints figures.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/retention"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
)

type size struct{ messages, contacts int }

type config struct {
	backends   []string
	sizes      []size
	reps       int
	bigSubject int
	retention  int
	pruneBatch int
	eraseBatch int
	rate       int
	phase      time.Duration
	dir, dsn   string
	plans      bool
}

func main() {
	var c config
	var backends, sizes string
	flag.StringVar(&backends, "backends", env("BACKENDS", "sqlite,postgres"), "backends to measure (sqlite, postgres)")
	flag.StringVar(&sizes, "sizes", env("SIZES", "10000:10000,1000000:200000"), "stores to build, messages:contacts, comma-separated, smallest first")
	flag.IntVar(&c.reps, "reps", envInt("REPS", 10), "repetitions of each timed operation (the median is printed)")
	flag.IntVar(&c.bigSubject, "big-subject", envInt("BIG_SUBJECT", 100000), "messages of the person erased under ingest load (largest store)")
	flag.IntVar(&c.retention, "retention", envInt("RETENTION", 500000), "messages the retention run under ingest load removes (largest store)")
	flag.IntVar(&c.pruneBatch, "retention-batch", envInt("RETENTION_BATCH", retention.DefaultBatchSize), "messages per retention batch (the worker's --retention-batch-size)")
	flag.IntVar(&c.eraseBatch, "erase-batch", envInt("ERASE_BATCH", sqlite.DefaultEraseBatch), "rows per table of one SQLite erasure transaction")
	flag.IntVar(&c.rate, "rate", envInt("RATE", 200), "deliveries per second of the ingest load")
	flag.DurationVar(&c.phase, "phase", envDuration("PHASE", 5*time.Second), "length of the ingest phase without erasure or retention")
	flag.StringVar(&c.dir, "dir", env("BENCH_TMPDIR", "/var/tmp"), "directory for the SQLite stores (a real disk: fsync must cost what it costs)")
	flag.StringVar(&c.dsn, "postgres-dsn", env("OMNIFLOW_TEST_POSTGRES_DSN", ""), "PostgreSQL server whose role may create databases")
	flag.BoolVar(&c.plans, "plans", os.Getenv("PLANS") != "", "print every statement's query plan, not only those with problems")
	flag.Parse()
	c.backends = strings.Split(backends, ",")
	for _, s := range strings.Split(sizes, ",") {
		m, k, ok := strings.Cut(s, ":")
		mi, err1 := strconv.Atoi(m)
		ki, err2 := strconv.Atoi(k)
		if !ok || err1 != nil || err2 != nil || mi <= 0 || ki <= 0 {
			fmt.Fprintf(os.Stderr, "--sizes: %q is not messages:contacts\n", s)
			os.Exit(2)
		}
		c.sizes = append(c.sizes, size{mi, ki})
	}
	if prof := os.Getenv("CPUPROFILE"); prof != "" {
		f, err := os.Create(prof)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	if err := run(context.Background(), c); err != nil {
		fmt.Fprintln(os.Stderr, "bench-erasure:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	fmt.Printf("machine: %d cores; load average before: %s\n", numCPU(), loadavg())
	var results []backendResult
	for _, b := range c.backends {
		r, err := runBackend(ctx, c, b)
		if err != nil {
			return fmt.Errorf("%s: %w", b, err)
		}
		results = append(results, r)
	}
	report(os.Stdout, results, c.plans)
	fmt.Printf("\nload average after: %s\n", loadavg())
	return nil
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
