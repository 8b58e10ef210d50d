package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	// A command name with a space and a parenthesis, as /proc allows.
	line := "4242 (ingest) worker) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 75 0 0 20 0 9 0 100 0 0"
	got, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3250 * time.Millisecond; got != want { // (250 + 75) ticks of 10 ms
		t.Fatalf("cpu = %s, want %s", got, want)
	}
	if _, err := parseProcStat("4242 (x) S 1 2"); err == nil {
		t.Fatal("a truncated stat line was accepted")
	}
}

func TestParseMachineStat(t *testing.T) {
	t.Parallel()
	busy, total, err := parseMachineStat("cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n")
	if err != nil {
		t.Fatal(err)
	}
	if busy != 160 || total != 1000 { // idle 800 and iowait 40 are not busy
		t.Fatalf("busy %d total %d, want 160 1000", busy, total)
	}
	if _, _, err := parseMachineStat("intr 1 2 3"); err == nil {
		t.Fatal("a file without a cpu line was accepted")
	}
}

// The live readers work on this machine: this process's CPU grows as it spins.
func TestSampleOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	a := sample(os.Getpid(), os.Getpid())
	for deadline := time.Now().Add(150 * time.Millisecond); time.Now().Before(deadline); {
	}
	b := sample(os.Getpid(), os.Getpid())
	if b.client <= a.client || b.total <= a.total {
		t.Fatalf("CPU did not advance: %+v then %+v", a, b)
	}
	if b.server < a.server || b.behind < a.behind || b.behind == 0 {
		t.Fatalf("process CPU went backwards or was not read: %s then %s, %s then %s", a.server, b.server, a.behind, b.behind)
	}
	c := costOf(a, b, 10, os.Getpid(), os.Getpid())
	if c.client <= 0 || c.busy <= 0 || c.busy > 1 || !c.behindKnown {
		t.Fatalf("cost of the window: %+v", c)
	}
}

func TestBudget(t *testing.T) {
	t.Parallel()
	b := cost{client: 50 * time.Microsecond, server: 40 * time.Microsecond, busy: 0.9, serverKnown: true}
	d := cost{client: 55 * time.Microsecond, server: 200 * time.Microsecond, busy: 0.8, serverKnown: true}
	got := budget(b, d, 0.5)
	// (50+40)/0.5 - 55 = 125 us.
	if !strings.Contains(got, "ratio of 0.50 the durable worker may spend 125µs, it spent 200µs") {
		t.Fatalf("budget line: %s", got)
	}
	// (50+40)/0.6 - 55 = 95 us.
	if got := budget(b, d, 0.6); !strings.Contains(got, "ratio of 0.60 the durable worker may spend 95µs") {
		t.Fatalf("budget line: %s", got)
	}
}

// Through the door, three processes share the CPU: (30+50)/(30+20+50) = 0.80; with the
// door apart, two.
func TestDoorBudget(t *testing.T) {
	t.Parallel()
	us := time.Microsecond
	direct := cost{client: 30 * us, server: 50 * us, busy: 1, serverKnown: true}
	fd := cost{client: 30 * us, server: 20 * us, behind: 50 * us, busy: 1, serverKnown: true, behindKnown: true}
	got := doorBudget(direct, fd, false)
	if !strings.Contains(got, "client 30µs + door 20µs + worker 50µs") || !strings.Contains(got, "the ratio is at most 0.80") {
		t.Fatalf("door budget line: %s", got)
	}
	fd.server = 40 * us // (30+50)/(30+40+50) = 0.67
	if got := doorBudget(direct, fd, false); !strings.Contains(got, "at most 0.67") {
		t.Fatalf("door budget line: %s", got)
	}
	fd.behind = 70 * us // on a core of its own: (30+50)/(30+70) = 0.80
	if got := doorBudget(direct, fd, true); !strings.Contains(got, "the door on a core of its own, the ratio is at most 0.80") {
		t.Fatalf("door budget line: %s", got)
	}
}
