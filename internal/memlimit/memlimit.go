// Package memlimit sets the Go runtime's memory settings of the project's processes:
// their collector's target, and a soft memory limit below the container's limit, so
// that the collector works harder as the heap nears it instead of letting garbage grow
// until the kernel kills the process.
package memlimit

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
)

// Configure collects garbage at gcPercent heap growth unless $GOGC is set, and sets
// the soft memory limit from the container's (FromContainer), which it logs.
func Configure(log logr.Logger, gcPercent int) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if limit := FromContainer(); limit > 0 {
		log.Info("Soft memory limit from the container's limit", "bytes", limit, "share", Share)
	}
}

// Share is the share of the container's memory limit given to the Go runtime as
// its soft limit. The rest is for what the runtime's limit does not cover, such as
// the binary's own mapped pages and (in the ingest worker) SQLite's page caches.
const Share = 0.8

// cgroupMemoryFiles are where the container's memory limit is read, cgroup
// v2 first.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// FromContainer sets the runtime's soft memory limit to Share of the container's
// limit, unless GOMEMLIMIT says otherwise (the runtime reads it itself). It returns
// the limit set, 0 if none.
func FromContainer() int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	for _, path := range cgroupMemoryFiles {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if limit := softMemoryLimit(string(b)); limit > 0 {
			debug.SetMemoryLimit(limit)
			return limit
		}
		return 0
	}
	return 0
}

// softMemoryLimit is the soft limit for a cgroup memory limit file's
// content: 0 when it sets no limit ("max" in cgroup v2, a number near
// 2^63 in v1) or cannot be read.
func softMemoryLimit(content string) int64 {
	s := strings.TrimSpace(content)
	if s == "" || s == "max" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	// cgroup v1 reports "no limit" as the largest page-aligned int64.
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0
	}
	return int64(float64(n) * Share)
}
