package clusterchannels_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/clusterchannels"
	"github.com/omniflowcrm/omniflow-operator/internal/ingest"
	"github.com/omniflowcrm/omniflow-operator/internal/mediafetch"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

// The suite runs a real kube-apiserver and etcd (envtest, RBAC authorization on) and, in
// the test process, the worker's in-cluster mode as the worker's ServiceAccount. No
// operator runs: the tests play its part (Role resourceNames, MetaChannel Ready).
var (
	k8s     client.Client // admin
	restCfg *rest.Config  // admin config of the envtest API server
	testEnv *envtest.Environment
)

const (
	// Generous: envtest shares a 2-core machine with other suites. The worker watches
	// what it reads, so changes land well within this.
	timeout  = 30 * time.Second
	interval = 100 * time.Millisecond
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run the tests with `make test`, "+
			"or export KUBEBUILDER_ASSETS=$(hack/setup-envtest.sh)")
		return 1
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                clusterchannels.Scheme(),
	}
	testEnv = env
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start envtest: %v\n", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop envtest: %v\n", err)
		}
	}()
	restCfg = cfg
	// The test's admin client also writes RBAC objects, which the worker's scheme lacks.
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(platformv1.AddToScheme(scheme))
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintf(os.Stderr, "create client: %v\n", err)
		return 1
	}
	return m.Run()
}

// tenantNS creates a Tenant, its namespace and the worker's Role (no Secrets yet) and
// RoleBinding, built by the operator's own builders and applied like the operator does.
func tenantNS(t *testing.T, g Gomega, name string) *platformv1.Tenant {
	t.Helper()
	ctx := context.Background()
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: platformv1.TenantSpec{DisplayName: "Test " + name}}
	g.Expect(k8s.Create(ctx, tn)).To(Succeed())
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tn.NamespaceName(), Labels: map[string]string{platformv1.LabelTenant: name}}}
	g.Expect(k8s.Create(ctx, ns)).To(Succeed())
	g.Expect(k8s.Apply(ctx, controllers.DesiredWorkerRoleBinding(tn), client.FieldOwner("omniflow-operator"), client.ForceOwnership)).To(Succeed())
	syncRole(g, tn)
	return tn
}

// syncRole plays the operator's Tenant controller: the Role names exactly the Secrets the
// namespace's channels reference.
func syncRole(g Gomega, tn *platformv1.Tenant) {
	ctx := context.Background()
	var list platformv1.MetaChannelList
	g.ExpectWithOffset(1, k8s.List(ctx, &list, client.InNamespace(tn.NamespaceName()))).To(Succeed())
	var requests platformv1.DeletionRequestList
	g.ExpectWithOffset(1, k8s.List(ctx, &requests, client.InNamespace(tn.NamespaceName()))).To(Succeed())
	role := controllers.DesiredWorkerRole(tn, controllers.WorkerSecretNames(list.Items, requests.Items))
	g.ExpectWithOffset(1, k8s.Apply(ctx, role, client.FieldOwner("omniflow-operator"), client.ForceOwnership)).To(Succeed())
}

// setReady plays the operator's MetaChannel controller: it writes the verdict through the
// status subresource, stamped for the channel's current generation.
func setReady(g Gomega, ns, name string, ready bool, reason string) {
	ctx := context.Background()
	var mc platformv1.MetaChannel
	g.ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &mc)).To(Succeed())
	st := metav1.ConditionFalse
	if ready {
		st = metav1.ConditionTrue
	}
	mc.Status.ObservedGeneration = mc.Generation
	apimeta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{
		Type: platformv1.ConditionReady, Status: st, Reason: reason, Message: "set by the test", ObservedGeneration: mc.Generation,
	})
	g.ExpectWithOffset(1, k8s.Status().Update(ctx, &mc)).To(Succeed())
}

func channelSecret(g Gomega, ns, name string, data map[string]string) {
	channelSecretOfType(g, ns, name, corev1.SecretTypeOpaque, data)
}

func channelSecretOfType(g Gomega, ns, name string, typ corev1.SecretType, data map[string]string) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Type: typ, StringData: data}
	g.ExpectWithOffset(2, k8s.Create(context.Background(), s)).To(Succeed())
}

func whatsAppChannel(ns, name, phoneID, secretName string) *platformv1.MetaChannel {
	return &platformv1.MetaChannel{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: platformv1.MetaChannelSpec{
			Platform:       platformv1.PlatformWhatsApp,
			WhatsApp:       &platformv1.WhatsAppChannel{PhoneNumberID: phoneID, BusinessAccountID: "109876543210987"},
			AppSecretRef:   &platformv1.SecretKeyRef{Name: secretName, Key: "appSecret"},
			VerifyTokenRef: &platformv1.SecretKeyRef{Name: secretName, Key: "verifyToken"},
		},
	}
}

// logBuffer collects the worker's log lines, at every verbosity, to check them for
// secrets and ids.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) add(prefix, args string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(prefix + " " + args + "\n")
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// worker is the worker's in-cluster mode running in the test process: the same
// clusterchannels.Watcher and ingest.Serve that `ingest-worker serve --namespace --tenant`
// wires, reaching the API server as system:serviceaccount:<ns>:ingest-worker.
type worker struct {
	base    string // http://127.0.0.1:port
	tenant  string
	dataDir string
	logs    *logBuffer
	// requests counts what the worker sends the API server.
	requests *requestCounter
}

// workerOption changes the worker's configuration before it starts; c is its client,
// acting as its ServiceAccount.
type workerOption func(cfg *ingest.ServeConfig, c client.Client)

// withMediaFetch turns on media fetching, its report written into the report ConfigMap
// as `serve` wires it, checked every reportInterval.
func withMediaFetch(ns string, reportInterval time.Duration) workerOption {
	return func(cfg *ingest.ServeConfig, c client.Client) {
		cfg.MediaFetch = true
		cfg.Media = mediafetch.Config{Reporter: &workerreport.MediaReporter{Client: c, Namespace: ns}, ReportInterval: reportInterval}
	}
}

func startWorker(t *testing.T, g Gomega, tn *platformv1.Tenant, opts ...workerOption) *worker {
	t.Helper()
	cfg := rest.CopyConfig(restCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + tn.NamespaceName() + ":" + controllers.WorkerName}
	w := &worker{tenant: tn.Name, dataDir: t.TempDir(), logs: &logBuffer{}, requests: &requestCounter{}}
	cfg.WrapTransport = w.requests.wrap
	log := funcr.New(w.logs.add, funcr.Options{Verbosity: 10})
	reg := channels.NewRegistry()
	src, err := clusterchannels.New(clusterchannels.Config{
		RestConfig: cfg, Namespace: tn.NamespaceName(), Registry: reg, Log: log,
	})
	g.Expect(err).NotTo(HaveOccurred())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	w.base = "http://" + ln.Addr().String()
	// As `serve` wires it: the same client files Meta's deletion requests and carries
	// out the namespace's DeletionRequests.
	c, err := client.New(cfg, client.Options{Scheme: clusterchannels.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())
	serveCfg := ingest.ServeConfig{
		Listener: ln, DataDir: w.dataDir, Tenant: tn.Name, Registry: reg, Source: src, Log: log,
		ShutdownTimeout: 10 * time.Second,
		Deletions:       &subjecterasure.Desk{Client: c, Namespace: tn.NamespaceName()},
		Offboard:        src.Offboard,
		Tasks: []func(context.Context, store.Store){func(ctx context.Context, st store.Store) {
			p := &subjecterasure.Processor{
				Client: c, RestConfig: cfg, Namespace: tn.NamespaceName(), Store: st, Clock: clock.RealClock{},
				Log: log.WithName("deletion-requests"),
			}
			_ = p.Run(ctx)
		}},
	}
	for _, o := range opts {
		o(&serveCfg, c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ingest.Serve(ctx, serveCfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v\nlogs:\n%s", err, w.logs)
		}
	})
	g.Eventually(func() int { return w.get("/readyz") }, timeout, interval).Should(Equal(http.StatusOK),
		"the worker gets ready once its channels are loaded")
	return w
}

func (w *worker) do(method, path string, body []byte, header http.Header) int {
	req, err := http.NewRequest(method, w.base+path, bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0 // the caller's Eventually/Expect reports a wrong status
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func (w *worker) get(path string) int { return w.do(http.MethodGet, path, nil, http.Header{}) }

// handshake is Meta's subscription check under the Ingress path. It stores nothing, so
// tests poll it to learn whether a channel is served before posting a delivery once.
func (w *worker) handshake(channel, token string) int {
	q := url.Values{"hub.mode": {"subscribe"}, "hub.challenge": {"1158201444"}, "hub.verify_token": {token}}
	return w.get("/t/" + w.tenant + "/webhooks/meta/" + channel + "?" + q.Encode())
}

// deliver posts a delivery signed with appSecret (HMAC-SHA256 of the raw body, as Meta
// does) to the Ingress path of the channel.
func (w *worker) deliver(channel, appSecret string, body []byte) int {
	h := http.Header{"Content-Type": {"application/json"}}
	h.Set(meta.SignatureHeader, meta.Sign([]byte(appSecret), body))
	return w.do(http.MethodPost, "/t/"+w.tenant+"/webhooks/meta/"+channel, body, h)
}

// storedMessageIDs reads the worker's store (read-only, beside the running worker, as
// `ingest-worker export` does).
func (w *worker) storedMessageIDs(g Gomega) []string {
	st, err := sqlite.Open(w.dataDir, sqlite.Options{ReadOnly: true})
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer st.Close()
	ids := []string{}
	g.ExpectWithOffset(1, st.Export(context.Background(), store.Filter{}, func(r store.Record) error {
		if r.Kind != store.KindMessage {
			return nil
		}
		var m struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(r.Doc, &m); err != nil {
			return fmt.Errorf("decode exported message: %w", err)
		}
		ids = append(ids, m.ID)
		return nil
	})).To(Succeed())
	return ids
}

// waDelivery is a one-message WhatsApp delivery for phoneID.
func waDelivery(phoneID, msgID string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"109876543210987","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":%q},"contacts":[{"profile":{"name":"Ana"},"wa_id":"15555550142"}],"messages":[{"from":"15555550142","id":%q,"timestamp":"1781100000","type":"text","text":{"body":"hello"}}]}}]}]}`,
		phoneID, msgID))
}

// noSecretsLogged fails if any of the given values appears in the worker's logs.
func noSecretsLogged(t *testing.T, w *worker, values ...string) {
	t.Helper()
	logs := w.logs.String()
	for _, v := range values {
		if strings.Contains(logs, v) {
			t.Errorf("the worker logged %q:\n%s", v, logs)
		}
	}
}
