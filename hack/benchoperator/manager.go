package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// manager is the operator's manager binary running as its own process.
type manager struct {
	cmd     *exec.Cmd
	log     *os.File
	metrics string // base URL of the plain-HTTP metrics endpoint
	health  string
	pprof   string
	done    chan struct{}
}

// startManager runs the manager binary; withPprof turns on its profiler
// endpoint (a flag older managers do not know).
func startManager(bin, kubeconfig, work, name string, withPprof bool, extra, env []string) (*manager, error) {
	mport, err := freePort()
	if err != nil {
		return nil, err
	}
	hport, err := freePort()
	if err != nil {
		return nil, err
	}
	pport, err := freePort()
	if err != nil {
		return nil, err
	}
	if withPprof {
		extra = append([]string{fmt.Sprintf("--pprof-bind-address=127.0.0.1:%d", pport)}, extra...)
	}
	args := append([]string{
		"--kubeconfig=" + kubeconfig,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", mport),
		"--metrics-secure=false",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", hport),
		"--worker-image=example.invalid/omniflow:bench",
	}, extra...)
	logFile, err := os.Create(filepath.Join(work, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start manager: %w", err)
	}
	m := &manager{cmd: cmd, log: logFile, done: make(chan struct{}),
		metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", mport), health: fmt.Sprintf("http://127.0.0.1:%d/readyz", hport),
		pprof: fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap", pport)}
	go func() { _ = cmd.Wait(); close(m.done) }()
	return m, nil
}

// stop ends the manager as Kubernetes does: SIGTERM, then its shutdown.
func (m *manager) stop() {
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	_ = m.log.Close()
}

func (m *manager) exited() error {
	select {
	case <-m.done:
		return fmt.Errorf("the manager exited (%v); its log: %s", m.cmd.ProcessState, m.log.Name())
	default:
		return nil
	}
}

func (m *manager) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if err := m.exited(); err != nil {
			return err
		}
		if resp, err := http.Get(m.health); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the manager was not ready within %s; its log: %s", limit, m.log.Name())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitIdle waits until the tenant controller has reconciled at least n
// times since the process started and every work queue has been empty for
// three samples in a row: the operator has nothing left to do.
func (m *manager) waitIdle(ctx context.Context, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	quiet := 0
	for quiet < 3 {
		if err := m.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the manager did not become idle within %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		text, err := m.scrape(ctx)
		if err != nil {
			continue
		}
		reconciles := sumMetric(text, "controller_runtime_reconcile_total", `controller="tenant"`)
		depth := sumMetric(text, "workqueue_depth", "")
		if reconciles >= float64(n) && depth == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	return nil
}

func (m *manager) scrape(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.metrics, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func (m *manager) metric(ctx context.Context, name string) (float64, error) {
	text, err := m.scrape(ctx)
	if err != nil {
		return 0, fmt.Errorf("scrape metrics: %w", err)
	}
	return sumMetric(text, name, ""), nil
}

// sumMetric adds up the samples of name (in the Prometheus text format)
// whose labels contain labelFilter.
func sumMetric(text, name, labelFilter string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // a longer name with this prefix
		}
		if labelFilter != "" && !strings.Contains(rest, labelFilter) {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// heapProfile saves the manager's heap profile to path; withGC has the
// manager collect first, so that the profile holds only what is live.
func (m *manager) heapProfile(ctx context.Context, path string, withGC bool) error {
	url := m.pprof
	if withGC {
		url += "?gc=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// rss is the resident set size of the manager process (VmRSS).
func (m *manager) rss() (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("read manager status: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", m.cmd.Process.Pid)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
