package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// operatorUser is the identity of the manager process; the audit policy
// records every request of this user (and of ServiceAccounts).
const operatorUser = testenv.OperatorUser

// auditPolicy logs the operator's requests, and those of ServiceAccounts
// (the worker measured idle), at Metadata level once their response is
// complete: enough to count requests by user, verb and resource.
var auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
- level: Metadata
  users: ["` + operatorUser + `"]
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
`

type controlPlane struct {
	env        *testenv.Env
	kubeconfig string
	audit      auditLog
}

func startControlPlane(work string) (*controlPlane, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run `make bench-operator`, or export KUBEBUILDER_ASSETS=$(hack/setup-envtest.sh)")
	}
	policy := filepath.Join(work, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(work, "audit.log")
	scheme := testenv.Scheme()
	env := &envtest.Environment{CRDDirectoryPaths: []string{testenv.CRDDir()}, ErrorIfCRDPathMissing: true, Scheme: scheme}
	args := env.ControlPlane.GetAPIServer().Configure()
	args.Append("audit-policy-file", policy)
	args.Append("audit-log-path", logPath)
	// Default batching would delay lines; the log is read while it grows.
	args.Append("audit-log-mode", "blocking")
	args.Append("audit-log-maxsize", "0")
	// envtest's default range (a /24) runs out after about 250 tenants:
	// every tenant has a Service, and the raw client makes as many again.
	args.Set("service-cluster-ip-range", "10.0.0.0/16")
	e, err := testenv.Adopt(env)
	if err != nil {
		return nil, err
	}
	user, err := env.AddUser(envtest.User{Name: operatorUser, Groups: []string{"system:masters", "system:authenticated"}}, nil)
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("add operator user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	path := filepath.Join(work, "operator.kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &controlPlane{env: e, kubeconfig: path, audit: auditLog{path: logPath}}, nil
}

func (cp *controlPlane) stop() { _ = cp.env.Stop() }

// auditLog reads the API server's audit log.
type auditLog struct{ path string }

// writeCount counts write requests, Events apart.
type writeCount struct {
	objects int // writes to anything but Events
	events  int // Event creations and patches
}

func (w writeCount) String() string {
	return fmt.Sprintf("%d (+%d Events)", w.objects, w.events)
}

type auditEvent struct {
	User      struct{ Username string } `json:"user"`
	Verb      string                    `json:"verb"`
	ObjectRef *struct {
		Resource string `json:"resource"`
		APIGroup string `json:"apiGroup"`
	} `json:"objectRef"`
	RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
	RequestURI               string    `json:"requestURI"`
}

var writeVerbs = map[string]bool{"create": true, "update": true, "patch": true, "delete": true, "deletecollection": true, "apply": true}

// eachBetween calls fn with every request of user received in [from, to).
func (a auditLog) eachBetween(user string, from, to time.Time, fn func(auditEvent)) error {
	f, err := os.Open(a.path)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("parse audit log: %w", err)
		}
		if ev.User.Username == user && !ev.RequestReceivedTimestamp.Before(from) && ev.RequestReceivedTimestamp.Before(to) {
			fn(ev)
		}
	}
	return sc.Err()
}

// writesBetween counts the operator's writes received in [from, to).
func (a auditLog) writesBetween(from, to time.Time) (writeCount, error) {
	var w writeCount
	err := a.eachBetween(operatorUser, from, to, func(ev auditEvent) {
		switch {
		case !writeVerbs[ev.Verb] || ev.ObjectRef == nil:
		case ev.ObjectRef.Resource == "events":
			w.events++
		default:
			w.objects++
		}
	})
	return w, err
}

func goBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	return nil
}

func splitArgs(s string) []string { return strings.Fields(s) }
