package clusterchannels_test

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
)

var servingRE = regexp.MustCompile(`"msg":"Serving".*"addr":"([^"]+)"`)

// The real binary with the operator's Deployment arguments and environment
// (controllers.WorkerArgs, POD_NAMESPACE, OMNIFLOW_TENANT) finds its cluster through
// KUBECONFIG, authenticates as the worker's ServiceAccount (a client certificate for that
// user name, which RBAC matches like a token), serves a Ready channel under the Ingress
// path, and stops cleanly on SIGTERM.
func TestBinaryWithDeploymentArgs(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	tn := tenantNS(t, g, "hooli")
	ns := tn.NamespaceName()
	channelSecret(g, ns, "hooli-secrets", map[string]string{"appSecret": appSecretV1, "verifyToken": verifyV1})
	g.Expect(k8s.Create(ctx, whatsAppChannel(ns, "wa", "444444444444444", "hooli-secrets"))).To(Succeed())
	syncRole(g, tn)
	setReady(g, ns, "wa", true, platformv1.ReasonChannelAccepted)

	dir := t.TempDir()
	bin := filepath.Join(dir, "ingest-worker")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/ingest-worker")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "go build: %s", out)

	user, err := testEnv.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + ns + ":" + controllers.WorkerName,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	kubeconfig, err := user.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	kcPath := filepath.Join(dir, "kubeconfig")
	g.Expect(os.WriteFile(kcPath, kubeconfig, 0o600)).To(Succeed())

	// Exactly the Deployment's arguments; the test then moves the listener off :8080 and
	// the store out of /data, which a test cannot use (later flags win).
	dataDir := filepath.Join(dir, "data")
	g.Expect(os.Mkdir(dataDir, 0o700)).To(Succeed())
	args := append(controllers.WorkerArgs(tn), "--listen=127.0.0.1:0", "--data-dir="+dataDir)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ns, "OMNIFLOW_TENANT="+tn.Name, "KUBECONFIG="+kcPath)
	stderr, err := cmd.StderrPipe()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cmd.Start()).To(Succeed())
	logs := &logBuffer{}
	ready := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		addr := ""
		for sc := bufio.NewScanner(stderr); sc.Scan(); {
			line := sc.Text()
			logs.add("", line)
			if m := servingRE.FindStringSubmatch(line); m != nil {
				addr = m[1]
			}
			if strings.Contains(line, `"msg":"Ready"`) {
				ready <- addr
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var addr string
	select {
	case addr = <-ready:
	case err := <-exited:
		t.Fatalf("worker exited before Ready: %v\n%s", err, logs)
	case <-time.After(timeout):
		t.Fatalf("worker not Ready within %s\n%s", timeout, logs)
	}
	w := &worker{base: "http://" + addr, tenant: tn.Name, logs: logs}
	g.Eventually(func() int { return w.handshake("wa", verifyV1) }, timeout, interval).Should(Equal(http.StatusOK))
	g.Expect(w.deliver("wa", appSecretV1, waDelivery("444444444444444", "wamid.binary"))).To(Equal(http.StatusOK))

	g.Expect(cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
	select {
	case err := <-exited:
		g.Expect(err).NotTo(HaveOccurred(), "exit after SIGTERM\n%s", logs)
	case <-time.After(timeout):
		t.Fatalf("worker did not stop on SIGTERM\n%s", logs)
	}
	export, err := exec.Command(bin, "export", "--data-dir", dataDir).Output()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(export)).To(ContainSubstring(`"id":"wamid.binary"`), "the acknowledged delivery is stored")
	g.Expect(logs.String()).To(ContainSubstring(`"msg":"Channel served"`))
	noSecretsLogged(t, w, appSecretV1, verifyV1, "444444444444444")
}
