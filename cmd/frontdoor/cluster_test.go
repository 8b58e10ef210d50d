package main

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// The real binary in --cluster mode, against a real API server, as a ServiceAccount
// that may only get, list and watch MetaChannels: it becomes ready once it has listed
// them, routes the Ready holder's id to that tenant's worker Service (unreachable here,
// so Meta would get an error and retry), and acknowledges an id nobody holds.
func TestFrontDoorBinaryInCluster(t *testing.T) {
	g := NewWithT(t)
	door := clusterDoor(t, g, []*platformv1.MetaChannel{heldChannel("acme", "123456789012345", nil)})
	r := &rig{door: door}
	g.Expect(r.deliver(t, waText("777777777777777", "wamid.NOBODY"))).To(Equal(http.StatusOK))
	g.Expect(r.deliver(t, waText("123456789012345", "wamid.ACME"))).To(BeNumerically(">=", 500))
}

// With --app (as the operator runs it for a MetaApp) only the channels behind that app
// are routed, and the webhook answers under /apps/<app>/ too (the Ingress path).
func TestFrontDoorBinaryForOneApp(t *testing.T) {
	g := NewWithT(t)
	door := clusterDoor(t, g, []*platformv1.MetaChannel{
		heldChannel("acme", "123456789012345", &platformv1.MetaAppRef{Name: "shared"}),
		heldChannel("globex", "223456789012345", &platformv1.MetaAppRef{Name: "other"}),
		heldChannel("initech", "323456789012345", nil),
	}, "--app=shared")
	deliver := func(path string, body []byte) int {
		return post(t, "http://"+door.addr+path, body, meta.SignatureHeader, meta.Sign([]byte(appSecret), body))
	}
	for _, path := range []string{"/apps/shared/webhooks/meta", "/webhooks/meta"} {
		g.Expect(deliver(path, waText("123456789012345", "wamid.ACME"))).To(BeNumerically(">=", 500), "%s: routed to acme's (unreachable) worker", path)
		g.Expect(deliver(path, waText("223456789012345", "wamid.GLOBEX"))).To(Equal(http.StatusOK), "%s: another app's channel is not this door's", path)
		g.Expect(deliver(path, waText("323456789012345", "wamid.INITECH"))).To(Equal(http.StatusOK), "%s: a channel with its own secrets is not this door's", path)
	}
	g.Expect(deliver("/apps/other/webhooks/meta", waText("123456789012345", "wamid.X"))).To(Equal(http.StatusNotFound))
}

// heldChannel is a WhatsApp channel of tenant in tenant-<tenant>, as the operator
// leaves it once it holds its id and is Ready.
func heldChannel(tenant, phone string, app *platformv1.MetaAppRef) *platformv1.MetaChannel {
	mc := &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant-" + tenant, Name: "wa"},
		Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformWhatsApp,
			WhatsApp: &platformv1.WhatsAppChannel{PhoneNumberID: phone, BusinessAccountID: "109876543210987"}}}
	if app != nil {
		mc.Spec.AppRef = app
	} else {
		mc.Spec.AppSecretRef, mc.Spec.VerifyTokenRef = &platformv1.SecretKeyRef{Name: "s", Key: "a"}, &platformv1.SecretKeyRef{Name: "s", Key: "v"}
	}
	mc.Status.Tenant = tenant
	return mc
}

// clusterDoor starts an API server with channels (their namespaces created, their
// status written), and the real binary in --cluster mode as a ServiceAccount that may
// only read MetaChannels; it returns once the door is ready.
func clusterDoor(t *testing.T, g *WithT, chs []*platformv1.MetaChannel, args ...string) *proc {
	fdBin, _ := binaries(t)
	env, err := testenv.Start(testenv.Scheme())
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	k8s := env.Client

	const sa = "system:serviceaccount:omniflow-system:frontdoor"
	g.Expect(k8s.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "omniflow-frontdoor"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{platformv1.GroupVersion.Group}, Resources: []string{"metachannels"}, Verbs: []string{"get", "list", "watch"}}}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "omniflow-frontdoor"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "omniflow-frontdoor"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: sa}}})).To(Succeed())
	user, err := env.AddUser(envtest.User{Name: sa, Groups: []string{"system:serviceaccounts", "system:authenticated"}}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	kubeconfig, err := user.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	dir := t.TempDir()
	kcPath := write(t, filepath.Join(dir, "kubeconfig"), string(kubeconfig))

	for _, mc := range chs {
		status := mc.Status
		g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: mc.Namespace}})).To(Succeed())
		g.Expect(k8s.Create(ctx, mc)).To(Succeed())
		mc.Status = status
		mc.Status.HeldID = controllers.ChannelClaim(mc)
		apimeta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{Type: platformv1.ConditionReady, Status: metav1.ConditionTrue,
			Reason: platformv1.ReasonChannelAccepted, ObservedGeneration: mc.Generation})
		g.Expect(k8s.Status().Update(ctx, mc)).To(Succeed())
	}

	t.Setenv("KUBECONFIG", kcPath)
	door := start(t, fdBin, append([]string{"serve", "--cluster", "--listen", "127.0.0.1:0", "--forward-timeout", "2s",
		"--app-secret-file", write(t, filepath.Join(dir, "app-secret"), appSecret),
		"--verify-token-file", write(t, filepath.Join(dir, "verify-token"), verifyToken),
		"--forwarding-key-file", write(t, filepath.Join(dir, "fwd.key"), "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a")}, args...)...)
	waitReady(g, door)
	return door
}

// waitReady waits until the door's routing table is loaded (/readyz answers 200).
func waitReady(g *WithT, door *proc) {
	g.Eventually(func() int {
		resp, err := http.Get("http://" + door.addr + "/readyz")
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}).WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).Should(Equal(http.StatusOK), "logs:\n%s", door.log())
}
