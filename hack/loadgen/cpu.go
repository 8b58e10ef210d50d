package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU accounting for the measured window of a phase, so that a run says where the
// machine's CPU went: the load generator, the worker under test, and how busy the
// machine was. On a CPU-bound run these explain the ratio: with client cost C and
// worker costs Wb (baseline) and Wd (durable) per delivery, the ratio is about
// (C + Wb) / (C + Wd).

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, 100 on every
// Linux architecture Go supports.
const userHZ = 100

// usage is one sample of the CPU spent so far.
type usage struct {
	client time.Duration // this process (the load generator)
	server time.Duration // the worker under test; 0 when its pid is unknown
	behind time.Duration // the worker behind the server under test (the front door's); 0 when none
	busy   uint64        // machine-wide non-idle jiffies
	total  uint64        // machine-wide jiffies
}

func sample(pid, behind int) usage {
	var u usage
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.client = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if pid > 0 {
		if d, err := procCPU(pid); err == nil {
			u.server = d
		}
	}
	if behind > 0 {
		if d, err := procCPU(behind); err == nil {
			u.behind = d
		}
	}
	u.busy, u.total, _ = machineJiffies()
	return u
}

// procCPU is the user plus system CPU time of a process, from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStat(string(b))
}

func parseProcStat(s string) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold spaces: split after it.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no command field")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields", len(f))
	}
	var ticks uint64
	for _, v := range f[11:13] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// machineJiffies reads the aggregate cpu line of /proc/stat: busy (everything but idle
// and iowait) and total.
func machineJiffies() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseMachineStat(string(b))
}

func parseMachineStat(s string) (busy, total uint64, err error) {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: no cpu line")
	}
	// user nice system idle iowait irq softirq steal (guest time is inside user).
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += n
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, total, nil
}

// cost is the CPU of a measured window, per delivery.
type cost struct {
	client, server, behind time.Duration
	busy                   float64 // share of the machine's CPU in use, 0..1
	serverKnown            bool
	behindKnown            bool
}

func costOf(a, b usage, deliveries int64, pid, behind int) cost {
	if deliveries <= 0 {
		return cost{}
	}
	c := cost{
		client:      (b.client - a.client) / time.Duration(deliveries),
		server:      (b.server - a.server) / time.Duration(deliveries),
		behind:      (b.behind - a.behind) / time.Duration(deliveries),
		serverKnown: pid > 0,
		behindKnown: behind > 0,
	}
	if b.total > a.total {
		c.busy = float64(b.busy-a.busy) / float64(b.total-a.total)
	}
	return c
}
