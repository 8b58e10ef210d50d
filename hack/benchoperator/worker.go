package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
)

// workerIdle is what one real worker asked of the API server while idle.
type workerIdle struct {
	window  time.Duration
	others  []string // every request besides watches: verb and URI
	skipped string   // why it was not measured, if it was not
	rate    float64  // others per second
	tenant  string
	// atStart is how many requests besides watches it sent from its start
	// until workerStartTail after Ready (discovery, the lists its watches
	// begin with): none would mean the audit log does not see the worker, and
	// the zero would prove nothing.
	atStart int
}

// measureIdleWorker runs the ingest-worker binary of this tree for the first
// tenant exactly as its Deployment would (controllers.WorkerArgs, its
// environment), authenticated as the tenant's worker ServiceAccount (a client
// certificate for that user name, which RBAC matches like a token), waits
// until it is Ready, and counts in the audit log every request it sends
// during the window besides its watches.
func measureIdleWorker(ctx context.Context, cp *controlPlane, work string, window time.Duration) (workerIdle, error) {
	res := workerIdle{window: window, tenant: tenantName(0)}
	var t platformv1.Tenant
	if err := cp.env.Client.Get(ctx, client.ObjectKey{Name: res.tenant}, &t); err != nil {
		return res, fmt.Errorf("get tenant %s: %w", res.tenant, err)
	}
	ns := t.NamespaceName()
	bin := filepath.Join(work, "ingest-worker")
	if err := goBuild(bin, "./cmd/ingest-worker"); err != nil {
		return res, err
	}
	user, err := cp.env.AddUser(envtest.User{
		Name:   workerUser(ns),
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}, nil)
	if err != nil {
		return res, fmt.Errorf("add worker user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return res, err
	}
	kcPath := filepath.Join(work, "worker.kubeconfig")
	if err := os.WriteFile(kcPath, kc, 0o600); err != nil {
		return res, err
	}
	dataDir := filepath.Join(work, "worker-data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return res, err
	}
	// The Deployment's arguments; later flags move the listener and the store
	// off the pod's paths.
	args := append(controllers.WorkerArgs(&t), "--listen=127.0.0.1:0", "--data-dir="+dataDir)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ns, "OMNIFLOW_TENANT="+t.Name, "KUBECONFIG="+kcPath)
	logPath := filepath.Join(work, "worker.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return res, err
	}
	defer func() { _ = logFile.Close() }()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return res, err
	}
	cmd.Stdout = logFile
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start worker: %w", err)
	}
	ready := make(chan struct{}, 1)
	exited := make(chan error, 1)
	go func() {
		for sc := bufio.NewScanner(stderr); sc.Scan(); {
			line := sc.Text()
			_, _ = fmt.Fprintln(logFile, line)
			if strings.Contains(line, `"msg":"Ready"`) {
				select {
				case ready <- struct{}{}:
				default:
				}
			}
		}
		exited <- cmd.Wait()
	}()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			_ = err // a worker stopped by SIGTERM exits as it should; its log tells otherwise
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	}()
	select {
	case <-ready:
	case err := <-exited:
		res.skipped = fmt.Sprintf("the worker exited before Ready (%v); its log: %s", err, logPath)
		return res, nil
	case <-time.After(2 * time.Minute):
		res.skipped = "the worker was not Ready within 2m; its log: " + logPath
		return res, nil
	case <-ctx.Done():
		return res, ctx.Err()
	}
	// Its start (discovery and the lists its watches begin with) ends just
	// after it logs Ready: the deletion-request task starts then.
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(workerStartTail):
	}
	from := time.Now()
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(window):
	}
	to := time.Now()
	// A request is logged when its response completes: a short one within
	// milliseconds, so a short tail catches those sent at the window's end.
	time.Sleep(time.Second)
	atStart, err := cp.audit.requestsBetween(workerUser(ns), started, from)
	if err != nil {
		return res, err
	}
	res.atStart = len(atStart)
	if res.atStart == 0 {
		res.skipped = "the audit log shows no request of the worker at its start"
		return res, nil
	}
	res.others, err = cp.audit.requestsBetween(workerUser(ns), from, to)
	res.rate = float64(len(res.others)) / to.Sub(from).Seconds()
	return res, err
}

// workerStartTail is how long after Ready the worker's start is still
// counted as its start.
const workerStartTail = 5 * time.Second

func workerUser(ns string) string {
	return "system:serviceaccount:" + ns + ":" + controllers.WorkerName
}

// requestsBetween lists user's requests received in [from, to) besides its
// watches: a watch is one long request that costs the API server nothing
// while nothing changes, anything else is work.
func (a auditLog) requestsBetween(user string, from, to time.Time) (others []string, err error) {
	err = a.eachBetween(user, from, to, func(ev auditEvent) {
		if ev.Verb != "watch" {
			others = append(others, fmt.Sprintf("%s %s at +%s", ev.Verb, ev.RequestURI, ev.RequestReceivedTimestamp.Sub(from).Round(time.Millisecond)))
		}
	})
	return others, err
}
