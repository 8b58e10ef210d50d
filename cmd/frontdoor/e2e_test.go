package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/frontdoor"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

const e2eTimeout = 30 * time.Second

// TestFrontDoorEndToEnd runs the whole path against a real API server: the operator
// provisions the front door of a MetaApp and each tenant's forwarding credential; the
// real front door binary runs as the operator made it (its Deployment's arguments, the
// files its volumes mount, its ServiceAccount's identity), reaching the tenants' worker
// Services through --worker-address; two tenants' real workers hold the keys the
// operator wrote in their namespaces.
func TestFrontDoorEndToEnd(t *testing.T) {
	g := NewWithT(t)
	fdBin, workerBin := binaries(t)
	ctx := context.Background()
	env, err := testenv.Start(testenv.Scheme())
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	k8s := env.Client
	const opNS = "omniflow-system"
	g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opNS}})).To(Succeed())
	stop, err := testenv.StartOperator(env.Config, testenv.Scheme(), controllers.Options{
		Worker: controllers.WorkerConfig{Image: "omniflow:test", DefaultStorageClass: "standard"}, Namespace: opNS})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(stop)

	// The MetaApp, its Secrets, two tenants with two channels each behind it.
	g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shared-app", Namespace: opNS},
		StringData: map[string]string{"appSecret": appSecret, "verifyToken": verifyToken}})).To(Succeed())
	app := &platformv1.MetaApp{ObjectMeta: metav1.ObjectMeta{Name: "shared"}, Spec: platformv1.MetaAppSpec{AppID: "4242",
		AppSecretRef: platformv1.SecretKeyRef{Name: "shared-app", Key: "appSecret"}, VerifyTokenRef: platformv1.SecretKeyRef{Name: "shared-app", Key: "verifyToken"}}}
	g.Expect(k8s.Create(ctx, app)).To(Succeed())
	shared := &platformv1.MetaAppRef{Name: "shared"}
	wa := func(ns, name, phone, waba string) *platformv1.MetaChannel {
		return &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: platformv1.MetaChannelSpec{
			Platform: platformv1.PlatformWhatsApp, WhatsApp: &platformv1.WhatsAppChannel{PhoneNumberID: phone, BusinessAccountID: waba}, AppRef: shared}}
	}
	page := func(ns, name, id string) *platformv1.MetaChannel {
		return &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: platformv1.MetaChannelSpec{
			Platform: platformv1.PlatformMessenger, Messenger: &platformv1.MessengerChannel{PageID: id}, AppRef: shared}}
	}
	for _, tn := range []string{"acme", "globex"} {
		g.Expect(k8s.Create(ctx, &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: tn}, Spec: platformv1.TenantSpec{DisplayName: tn}})).To(Succeed())
		g.Eventually(func() error { return k8s.Get(ctx, types.NamespacedName{Name: "tenant-" + tn}, &corev1.Namespace{}) }, e2eTimeout).Should(Succeed())
	}
	for _, mc := range []*platformv1.MetaChannel{
		wa("tenant-acme", "wa", "123456789012345", "109876543210987"), page("tenant-acme", "page", "104857600123456"),
		wa("tenant-globex", "wa", "999999999999999", "209876543210987"), page("tenant-globex", "page", "104857600999999"),
	} {
		g.Expect(k8s.Create(ctx, mc)).To(Succeed())
	}

	// The front door's Deployment, available (envtest runs no kubelet): the app and its
	// channels become Ready.
	doorKey := types.NamespacedName{Namespace: opNS, Name: controllers.FrontDoorName("shared")}
	var dep appsv1.Deployment
	g.Eventually(func() error { return k8s.Get(ctx, doorKey, &dep) }, e2eTimeout).Should(Succeed())
	g.Expect(testenv.MarkAvailable(ctx, k8s, doorKey)).To(Succeed())
	ready := func(ns, name string) func(Gomega) {
		return func(g Gomega) {
			var mc platformv1.MetaChannel
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &mc)).To(Succeed())
			c := apimeta.FindStatusCondition(mc.Status.Conditions, platformv1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		}
	}
	for _, k := range []string{"tenant-acme/wa", "tenant-acme/page", "tenant-globex/wa", "tenant-globex/page"} {
		ns, name, _ := strings.Cut(k, "/")
		g.Eventually(ready(ns, name), e2eTimeout).Should(Succeed(), k)
	}
	// A channel of globex claiming acme's Page: in Conflict, it gets none of its parts.
	g.Expect(k8s.Create(ctx, page("tenant-globex", "stolen", "104857600123456"))).To(Succeed())
	g.Eventually(func(g Gomega) {
		var mc platformv1.MetaChannel
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: "tenant-globex", Name: "stolen"}, &mc)).To(Succeed())
		c := apimeta.FindStatusCondition(mc.Status.Conditions, platformv1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(platformv1.ReasonConflict))
	}, e2eTimeout).Should(Succeed())

	// The tenants' workers, with the credentials the operator wrote in their namespaces.
	dir := t.TempDir()
	tenants := map[string]*tenant{}
	dialAt := []string{}
	for _, spec := range []struct{ name, phone, waba, page string }{
		{"acme", "123456789012345", "109876543210987", "104857600123456"},
		{"globex", "999999999999999", "209876543210987", "104857600999999"},
	} {
		var key corev1.Secret
		g.Eventually(func() error {
			return k8s.Get(ctx, types.NamespacedName{Namespace: "tenant-" + spec.name, Name: controllers.ForwardKeySecret}, &key)
		}, e2eTimeout).Should(Succeed())
		tn := &tenant{name: spec.name, dataDir: filepath.Join(dir, spec.name), workerBin: workerBin, listen: freeAddr(t),
			keyFile: write(t, filepath.Join(dir, spec.name+".key"), string(key.Data[controllers.ForwardingKeyKey])),
			// Own secrets for the channels' direct URLs (the file format wants them);
			// forwarded parts need none.
			channelsFile: write(t, filepath.Join(dir, spec.name+".yaml"), fmt.Sprintf(`tenant: %s
channels:
  - {name: wa, platform: WhatsApp, whatsApp: {phoneNumberID: %q, businessAccountID: %q}, appSecret: own-%s, verifyToken: v}
  - {name: page, platform: Messenger, messenger: {pageID: %q}, appSecret: own-%s, verifyToken: v}
`, spec.name, spec.phone, spec.waba, spec.name, spec.page, spec.name))}
		tn.start(t)
		tenants[spec.name] = tn
		svc := strings.TrimPrefix(frontdoor.WorkerURL("tenant-"+spec.name), "http://")
		dialAt = append(dialAt, "--worker-address="+svc+"="+tn.listen)
	}
	acme, globex := tenants["acme"], tenants["globex"]

	// The front door as the operator runs it: its Deployment's arguments, the files its
	// volumes would mount, its ServiceAccount's identity.
	g.Expect(k8s.Get(ctx, doorKey, &dep)).To(Succeed())
	args, err := testenv.MountedArgs(ctx, k8s, dep.Namespace, &dep.Spec.Template.Spec, &dep.Spec.Template.Spec.Containers[0], filepath.Join(dir, "pod"))
	g.Expect(err).NotTo(HaveOccurred())
	user, err := env.AddUser(envtest.User{Name: "system:serviceaccount:" + opNS + ":" + dep.Spec.Template.Spec.ServiceAccountName,
		Groups: []string{"system:serviceaccounts", "system:authenticated"}}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	kubeconfig, err := user.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	t.Setenv("KUBECONFIG", write(t, filepath.Join(dir, "kubeconfig"), string(kubeconfig)))
	door := start(t, fdBin, append(append(args, "--listen=127.0.0.1:0"), dialAt...)...)
	base := "http://" + door.addr + "/apps/shared"
	waitReady(g, door)
	deliver := func(body []byte) int {
		return post(t, base+"/webhooks/meta", body, meta.SignatureHeader, meta.Sign([]byte(appSecret), body))
	}
	forwards := func() float64 { return acme.forwards(t) + globex.forwards(t) }

	// Mixed deliveries of the shared fixtures: each tenant's export holds exactly its
	// own parts; acme's Page, claimed in vain by globex, is acme's only.
	g.Eventually(func() int {
		return deliver(readFixture(t, filepath.Join(extraDir, "whatsapp-batch-two-numbers.json")))
	}, e2eTimeout).Should(Equal(http.StatusOK))
	text := readFixture(t, filepath.Join(fixtureDir, "messenger-text.json"))
	other := strings.NewReplacer("104857600123456", "104857600999999", "m_ZmFrZS1taWQtVFhUMQ", "m_globex").Replace(string(text))
	both, err := meta.Combine(text, []byte(other))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(deliver(both)).To(Equal(http.StatusOK))
	g.Expect(acme.messages(t)).To(Equal([]string{"page/m_ZmFrZS1taWQtVFhUMQ", "wa/wamid.EXTRA-OWN-1", "wa/wamid.EXTRA-OWN-2"}))
	g.Expect(globex.messages(t)).To(Equal([]string{"page/m_globex", "wa/wamid.EXTRA-FOREIGN-1"}))

	// Forged, unsigned and tampered deliveries are refused before any forward; an id
	// nobody holds is acknowledged and goes nowhere.
	mix, err := meta.Combine(waText("123456789012345", "wamid.A1"), waText("999999999999999", "wamid.G1"))
	g.Expect(err).NotTo(HaveOccurred())
	before := forwards()
	g.Expect(before).To(BeNumerically(">=", 4), "each tenant got its parts of both deliveries in one forward each")
	g.Expect(post(t, base+"/webhooks/meta", mix, meta.SignatureHeader, "")).To(Equal(http.StatusUnauthorized))
	g.Expect(post(t, base+"/webhooks/meta", mix, meta.SignatureHeader, meta.Sign([]byte("forged"), mix))).To(Equal(http.StatusUnauthorized))
	g.Expect(post(t, base+"/webhooks/meta", []byte(strings.Replace(string(mix), "wamid.G1", "wamid.G9", 1)), meta.SignatureHeader, meta.Sign([]byte(appSecret), mix))).To(Equal(http.StatusUnauthorized))
	g.Expect(deliver(waText("777777777777777", "wamid.NOBODY"))).To(Equal(http.StatusOK))
	g.Expect(forwards()).To(Equal(before), "nothing reached a worker")

	// One worker stopped: Meta gets an error; once it is back, Meta's retry leaves every
	// part stored once.
	globex.worker.stop()
	g.Expect(deliver(mix)).To(BeNumerically(">=", 500))
	globex.start(t)
	g.Eventually(func() int { return deliver(mix) }, e2eTimeout).Should(Equal(http.StatusOK))
	g.Expect(deliver(mix)).To(Equal(http.StatusOK))
	g.Expect(acme.messages(t)).To(Equal([]string{"page/m_ZmFrZS1taWQtVFhUMQ", "wa/wamid.A1", "wa/wamid.EXTRA-OWN-1", "wa/wamid.EXTRA-OWN-2"}))
	g.Expect(globex.messages(t)).To(Equal([]string{"page/m_globex", "wa/wamid.EXTRA-FOREIGN-1", "wa/wamid.G1"}))
}

// freeAddr returns a loopback address no one listens on, for a worker that must come
// back on the same address after a stop.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
