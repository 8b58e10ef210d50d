package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

const (
	tenantName  = "acme"
	channelName = "whatsapp-sales"
	phoneID     = "106540352242922"
	appSecret   = "demo-app-secret-not-for-production"
	verifyToken = "demo-verify-token"
	userA       = "15550100001"
	userB       = "15550100002"
	waitFor     = 90 * time.Second
)

var (
	s      = testenv.Scheme()
	ctxKey = types.NamespacedName{Name: tenantName}
)

// run performs the walk-through; every step prints one line, and any step
// that does not do what it says ends the demo with an error.
func run(ctx context.Context, out io.Writer, assets string) (err error) {
	if assets == "" {
		return errors.New("KUBEBUILDER_ASSETS is not set: run `make demo`")
	}
	step := func(format string, args ...any) { fmt.Fprintf(out, "==> "+format+"\n", args...) }
	work, err := os.MkdirTemp("", "omniflow-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()

	// 1. The control plane.
	env, err := testenv.Start(s)
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	stopKCM, err := testenv.StartControllerManager(env, assets)
	if err != nil {
		return fmt.Errorf("start kube-controller-manager: %w", err)
	}
	defer stopKCM()
	c := env.Client
	// The admission policies the operator ships: what a tenant's worker may write.
	if _, err := testenv.InstallPolicies(ctx, c); err != nil {
		return fmt.Errorf("install the admission policies: %w", err)
	}
	step("control plane up: kube-apiserver, etcd and kube-controller-manager, with the Omniflow CRDs and admission policies installed")

	// 2. The operator, in its own namespace (where MetaApps' front doors run).
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		return fmt.Errorf("create the operator's namespace: %w", err)
	}
	stopOperator, err := testenv.StartOperator(env.Config, s, controllers.Options{
		Worker:    controllers.WorkerConfig{Image: "omniflow/ingest-worker:demo"},
		Route:     controllers.RouteConfig{WebhookBaseURL: "https://hooks.example.com"},
		Namespace: operatorNamespace,
	})
	if err != nil {
		return err
	}
	defer stopOperator()
	step("operator running (Tenant, MetaChannel, MetaApp and DeletionRequest controllers)")

	// 3. A tenant and its channel.
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: tenantName}, Spec: platformv1.TenantSpec{DisplayName: "ACME Corp"}}
	if err := c.Create(ctx, tn); err != nil {
		return fmt.Errorf("create tenant: %w", err)
	}
	ns := tn.NamespaceName()
	var dep appsv1.Deployment
	if err := wait(ctx, "the tenant's worker Deployment", func() (bool, error) {
		return found(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &dep))
	}); err != nil {
		return err
	}
	step("Tenant %s provisioned: namespace %s, worker Deployment, Service, Role, NetworkPolicy, data claim, Ingress", tenantName, ns)

	if err := c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "acme-meta-app", Namespace: ns},
		StringData: map[string]string{"appSecret": appSecret, "verifyToken": verifyToken},
	}); err != nil {
		return fmt.Errorf("create channel secret: %w", err)
	}
	ch := &platformv1.MetaChannel{
		ObjectMeta: metav1.ObjectMeta{Name: channelName, Namespace: ns},
		Spec: platformv1.MetaChannelSpec{
			Platform:       platformv1.PlatformWhatsApp,
			WhatsApp:       &platformv1.WhatsAppChannel{PhoneNumberID: phoneID, BusinessAccountID: "102290129340398"},
			AppSecretRef:   &platformv1.SecretKeyRef{Name: "acme-meta-app", Key: "appSecret"},
			VerifyTokenRef: &platformv1.SecretKeyRef{Name: "acme-meta-app", Key: "verifyToken"},
		},
	}
	if err := c.Create(ctx, ch); err != nil {
		return fmt.Errorf("create channel: %w", err)
	}
	if err := wait(ctx, "the channel to be Ready", func() (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(ch), ch); err != nil {
			return false, err
		}
		return apimeta.IsStatusConditionTrue(ch.Status.Conditions, platformv1.ConditionReady), nil
	}); err != nil {
		return err
	}
	step("MetaChannel %s Ready; webhook URL for Meta's dashboard: %s", channelName, ch.Status.WebhookURL)

	// 4. The worker, as the kubelet would run it: the Deployment's own
	// arguments and environment, as the worker's ServiceAccount.
	w, err := startWorker(ctx, env, work, &dep)
	if err != nil {
		return err
	}
	defer w.kill()
	step("worker running locally with the Deployment's arguments %q, as system:serviceaccount:%s:%s", dep.Spec.Template.Spec.Containers[0].Args, ns, controllers.WorkerName)

	// 5. Meta delivers messages from two end-users.
	path := "/t/" + tenantName + "/webhooks/meta/" + channelName
	if code := w.get(path + "?hub.mode=subscribe&hub.verify_token=" + verifyToken + "&hub.challenge=4242"); code != http.StatusOK {
		return fmt.Errorf("subscription handshake answered %d, want 200", code)
	}
	for i, user := range []string{userA, userA, userB, userB} {
		body := delivery(user, fmt.Sprintf("wamid.demo.%d", i))
		if code := w.post(path, body, meta.Sign([]byte(appSecret), body)); code != http.StatusOK {
			return fmt.Errorf("signed delivery answered %d, want 200", code)
		}
	}
	if code := w.post(path, delivery(userA, "wamid.forged"), "sha256=0000"); code != http.StatusUnauthorized {
		return fmt.Errorf("forged delivery answered %d, want 401", code)
	}
	a, b, err := w.records(userA, userB)
	if err != nil {
		return err
	}
	if a != 3 || b != 3 {
		return fmt.Errorf("export shows %d and %d records for the two end-users, want 3 each", a, b)
	}
	step("4 signed deliveries stored and a forged one refused (401); export: end-user A %d records, end-user B %d records", a, b)

	// 6. End-user A asks to be forgotten.
	if err := c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "forget-a-subject", Namespace: ns},
		Type:       platformv1.SubjectSecretType,
		StringData: map[string]string{"id": "+" + userA},
	}); err != nil {
		return fmt.Errorf("create subject secret: %w", err)
	}
	dr := &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "forget-a", Namespace: ns},
		Spec: platformv1.DeletionRequestSpec{
			Platform: platformv1.PlatformWhatsApp, Reason: "demo: end-user A asked to be forgotten",
			SubjectSecretRef: platformv1.SecretKeyRef{Name: "forget-a-subject", Key: "id"},
		},
	}
	if err := c.Create(ctx, dr); err != nil {
		return fmt.Errorf("create deletion request: %w", err)
	}
	if err := wait(ctx, "the DeletionRequest to complete", func() (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(dr), dr); err != nil {
			return false, err
		}
		return dr.Status.Phase == platformv1.DeletionCompleted, nil
	}); err != nil {
		return err
	}
	if a, b, err = w.records(userA, userB); err != nil {
		return err
	}
	if a != 0 || b != 3 || dr.Status.Erased == nil || dr.Status.Erased.Messages != 2 {
		return fmt.Errorf("after the request: A %d records, B %d, erased %+v; want 0, 3 and 2 messages", a, b, dr.Status.Erased)
	}
	step("DeletionRequest forget-a Completed: erased %d messages, %d contact; subjectRef %s…; export: A %d records, B %d records",
		dr.Status.Erased.Messages, dr.Status.Erased.Contacts, dr.Status.SubjectRef[:24], a, b)

	// 7. Two more businesses, onboarded through the platform's one Meta app.
	if err := sharedAppWalkThrough(ctx, env, work, step); err != nil {
		return err
	}

	// 8. The business leaves.
	if err := c.Get(ctx, ctxKey, tn); err != nil {
		return err
	}
	patch := client.MergeFrom(tn.DeepCopy())
	tn.Spec.State = platformv1.TenantDeactivated
	tn.Spec.Erasure.GracePeriod = &metav1.Duration{Duration: 5 * time.Second}
	if err := c.Patch(ctx, tn, patch); err != nil {
		return fmt.Errorf("deactivate: %w", err)
	}
	if err := wait(ctx, "the worker to be scaled to zero", func() (bool, error) {
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &dep); err != nil {
			return false, err
		}
		return ptr.Deref(dep.Spec.Replicas, 1) == 0, nil
	}); err != nil {
		return err
	}
	w.stop() // what the kubelet does for a Deployment scaled to zero
	if err := c.Get(ctx, ctxKey, tn); err != nil {
		return err
	}
	step("Tenant deactivated: route removed, worker stopped; erasure scheduled at %s, deadline %s",
		tn.Status.ErasureScheduledAt.UTC().Format(time.RFC3339), tn.Status.ErasureDeadline.UTC().Format(time.RFC3339))

	if err := wait(ctx, "the tenant to be Erased", func() (bool, error) {
		if err := c.Get(ctx, ctxKey, tn); err != nil {
			return false, err
		}
		// No kubelet, so no real volume: the worker's data directory stands in
		// for it and goes when its claim goes.
		var pvc corev1.PersistentVolumeClaim
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.DataClaimName}, &pvc); apierrors.IsNotFound(err) {
			_ = os.RemoveAll(w.dataDir)
		}
		return tn.Status.Phase == platformv1.TenantPhaseErased, nil
	}); err != nil {
		return err
	}
	if _, err := os.Stat(w.dataDir); !os.IsNotExist(err) {
		return fmt.Errorf("the worker's data directory survived the erasure")
	}
	step("Tenant Erased at %s; the record in its status:", tn.Status.ErasedAt.UTC().Format(time.RFC3339))
	for _, st := range tn.Status.Erasure {
		fmt.Fprintf(out, "      %-16s %s  %s\n", st.Name, st.CompletedAt.UTC().Format(time.RFC3339), st.Verification)
	}
	step("done: everything the demo started is stopped")
	return nil
}

func found(err error) (bool, error) {
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// wait polls cond until it holds, fails, or waitFor passes.
func wait(ctx context.Context, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(waitFor)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not happen within %s", what, waitFor)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func delivery(user, id string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":%q},"contacts":[{"profile":{"name":"Demo user"},"wa_id":%q}],"messages":[{"from":%q,"id":%q,"timestamp":"1781100000","type":"text","text":{"body":"hello from the demo"}}]}}]}]}`,
		phoneID, user, user, id))
}

// proc is a binary run locally as the kubelet would run a Deployment's container: the
// Deployment's arguments and environment, the files of its Secret volumes, as its
// ServiceAccount.
type proc struct {
	cmd    *exec.Cmd
	exited chan error
	base   string
}

// worker is a tenant's ingest worker run as a local process.
type worker struct {
	proc
	bin, dataDir string
}

var servingRE = regexp.MustCompile(`"msg":"Serving".*"addr":"([^"]+)"`)

// build builds the command pkg (./cmd/NAME) into work once and returns the binary.
func build(ctx context.Context, work, pkg string) (string, error) {
	bin := filepath.Join(work, filepath.Base(pkg))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w: %s", pkg, err, out)
	}
	return bin, nil
}

// startWorker runs the tenant's worker of dep, with its data in a local directory.
func startWorker(ctx context.Context, env *testenv.Env, work string, dep *appsv1.Deployment) (*worker, error) {
	bin, err := build(ctx, work, "./cmd/ingest-worker")
	if err != nil {
		return nil, err
	}
	w := &worker{bin: bin, dataDir: filepath.Join(work, dep.Namespace+"-data")}
	if err := os.Mkdir(w.dataDir, 0o700); err != nil && !os.IsExist(err) {
		return nil, err
	}
	p, err := runAs(ctx, env, work, bin, dep, "--data-dir="+w.dataDir)
	if err != nil {
		return nil, err
	}
	w.proc = *p
	return w, nil
}

// runAs runs bin as dep's container would run, listening on a local port instead
// (later flags win), with extra arguments, and returns once it is ready.
func runAs(ctx context.Context, env *testenv.Env, work, bin string, dep *appsv1.Deployment, extra ...string) (*proc, error) {
	ns, pod := dep.Namespace, &dep.Spec.Template.Spec
	user, err := env.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + ns + ":" + pod.ServiceAccountName,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}, nil)
	if err != nil {
		return nil, err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	kc := filepath.Join(work, ns+"-"+dep.Name+".kubeconfig")
	if err := os.WriteFile(kc, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	container := &pod.Containers[0]
	args, err := testenv.MountedArgs(ctx, env.Client, ns, pod, container, filepath.Join(work, ns+"-"+dep.Name))
	if err != nil {
		return nil, err
	}
	p := &proc{exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, append(append(args, "--listen=127.0.0.1:0"), extra...)...)
	p.cmd.Env = append(os.Environ(), "KUBECONFIG="+kc)
	for _, e := range container.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace" {
			v = ns
		}
		p.cmd.Env = append(p.cmd.Env, e.Name+"="+v)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	ready := make(chan string, 1)
	var logs bytes.Buffer
	go func() {
		addr := ""
		for sc := bufio.NewScanner(stderr); sc.Scan(); {
			line := sc.Text()
			logs.WriteString(line + "\n")
			if m := servingRE.FindStringSubmatch(line); m != nil {
				addr = m[1]
			}
			if strings.Contains(line, `"msg":"Ready"`) {
				ready <- addr
			}
		}
		p.exited <- p.cmd.Wait()
	}()
	select {
	case addr := <-ready:
		p.base = "http://" + addr
		return p, nil
	case err := <-p.exited:
		return nil, fmt.Errorf("%s exited before it was ready: %v", filepath.Base(bin), err) //nolint:errorlint // err is nil when it exited cleanly
	case <-time.After(waitFor):
		p.kill()
		return nil, fmt.Errorf("%s did not become ready", filepath.Base(bin))
	}
}

func (w *proc) get(path string) int {
	resp, err := http.Get(w.base + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (w *proc) post(path string, body []byte, signature string) int {
	req, err := http.NewRequest(http.MethodPost, w.base+path, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(meta.SignatureHeader, signature)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// records counts what `ingest-worker export --subject` shows for each user. It runs
// as `kubectl exec` into the worker's pod would: with the worker's environment, whose
// credentials read the tenant's data key, without which a sealed store is unreadable.
func (w *worker) records(users ...string) (int, int, error) {
	var n []int
	for _, u := range users {
		cmd := exec.Command(w.bin, "export", "--data-dir", w.dataDir, "--subject", u)
		cmd.Env = w.cmd.Env
		out, err := cmd.Output()
		if err != nil {
			return 0, 0, fmt.Errorf("export: %w", err)
		}
		count := 0
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var rec map[string]any
			if line != "" && json.Unmarshal([]byte(line), &rec) == nil {
				count++
			}
		}
		n = append(n, count)
	}
	return n[0], n[1], nil
}

func (w *proc) stop() {
	if w.cmd == nil || w.cmd.Process == nil {
		return
	}
	_ = w.cmd.Process.Signal(os.Interrupt)
	select {
	case <-w.exited: //nolint:errcheck // stopping it: how it exits does not matter
	case <-time.After(30 * time.Second):
		_ = w.cmd.Process.Kill()
	}
	w.cmd = nil
}

func (w *proc) kill() {
	if w.cmd != nil && w.cmd.Process != nil {
		_ = w.cmd.Process.Kill()
	}
}

// repoRoot is the module root (the demo runs from it, or from hack/demo in
// its test).
func repoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}
