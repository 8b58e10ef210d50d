package clusterchannels_test

import (
	"bufio"
	"context"
	"encoding/json"
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
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
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
	export, err := exec.Command(bin, "export", "--data-dir", dataDir).Output()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(export)).To(ContainSubstring(`"id":"wamid.binary"`), "the acknowledged delivery is stored")

	// The sender asks to be forgotten: the worker carries out the request.
	fileDeletionRequest(g, tn, "forget-ana", "15555550142")
	g.Eventually(func(g Gomega) {
		var dr platformv1.DeletionRequest
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "forget-ana"}, &dr)).To(Succeed())
		g.Expect(dr.Status.Phase).To(Equal(platformv1.DeletionCompleted))
		g.Expect(dr.Status.Erased).NotTo(BeNil())
		g.Expect(dr.Status.Erased.Messages).To(Equal(int64(1)))
		g.Expect(dr.Status.Erased.Contacts).To(Equal(int64(1)))
	}, timeout, interval).Should(Succeed(), "%s", logs)
	export, err = exec.Command(bin, "export", "--data-dir", dataDir).Output()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(export)).NotTo(ContainSubstring("wamid.binary"))
	g.Expect(string(export)).NotTo(ContainSubstring("15555550142"))

	// Meta's deletion callback is wired in the binary's in-cluster mode: it files a
	// request and its status page answers.
	code, body := w.callback("wa", meta.SignSignedRequest([]byte(appSecretV1), []byte(callbackPayload)))
	g.Expect(code).To(Equal(http.StatusOK), "%s\n%s", body, logs)
	var answer struct {
		URL  string `json:"url"`
		Code string `json:"confirmation_code"`
	}
	g.Expect(json.Unmarshal([]byte(body), &answer)).To(Succeed())
	g.Expect(answer.URL).To(Equal(w.base + "/t/" + tn.Name + "/meta/deletion-status/" + answer.Code))
	status, page := httpGet(g, answer.URL)
	g.Expect(status).To(Equal(http.StatusOK))
	g.Expect(page).To(ContainSubstring("Confirmation code: " + answer.Code))
	g.Expect(deletionRequests(g, ns)).To(ContainElement(And(
		HaveField("Spec.Source", platformv1.SourceMetaCallback), HaveField("Status.ConfirmationCode", answer.Code))))

	g.Expect(cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
	select {
	case err := <-exited:
		g.Expect(err).NotTo(HaveOccurred(), "exit after SIGTERM\n%s", logs)
	case <-time.After(timeout):
		t.Fatalf("worker did not stop on SIGTERM\n%s", logs)
	}
	g.Expect(logs.String()).To(ContainSubstring(`"msg":"Channel served"`))
	noSecretsLogged(t, w, appSecretV1, verifyV1, "444444444444444", callbackUser)
}

// fileDeletionRequest files a request as a user would and accepts it as the
// operator would (the subject key, phase Pending, the Role naming the subject).
func fileDeletionRequest(g Gomega, tn *platformv1.Tenant, name, subject string) {
	ctx := context.Background()
	ns := tn.NamespaceName()
	key := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: platformv1.SubjectKeySecretName, Namespace: ns},
		Data:       map[string][]byte{platformv1.SubjectKeySecretKey: []byte("k3y-k3y-k3y-k3y-k3y-k3y-k3y-k3y!")},
	}
	g.Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, key))).To(Succeed())
	g.Expect(k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-subject", Namespace: ns},
		StringData: map[string]string{"id": subject},
	})).To(Succeed())
	dr := &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: platformv1.DeletionRequestSpec{
			Platform:         platformv1.PlatformWhatsApp,
			SubjectSecretRef: platformv1.SecretKeyRef{Name: name + "-subject", Key: "id"},
		},
	}
	g.Expect(k8s.Create(ctx, dr)).To(Succeed())
	patch := client.MergeFrom(dr.DeepCopy())
	now := metav1.Now()
	dr.Status.Phase, dr.Status.ReceivedAt = platformv1.DeletionPending, &now
	g.Expect(k8s.Status().Patch(ctx, dr, patch)).To(Succeed())
	syncRole(g, tn)
}
