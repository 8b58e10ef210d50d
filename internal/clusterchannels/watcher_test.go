package clusterchannels_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

const (
	phoneA      = "123456789012345"
	appSecretV1 = "app-secret-v1-0123456789abcdef"
	appSecretV2 = "app-secret-v2-fedcba9876543210"
	verifyV1    = "verify-token-v1-7f3c"
	verifyV2    = "verify-token-v2-9a1d"
)

// A channel's whole life in the cluster, as the worker sees it through its least-privilege
// Role: served once Ready, a rotated app secret and verify token in force within seconds
// without a restart, refused while the operator says Conflict, gone once deleted.
func TestChannelLifecycle(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	tn := tenantNS(t, g, "acme")
	ns := tn.NamespaceName()
	w := startWorker(t, g, tn)

	// Create the Secret and the channel; the operator would name the Secret in the Role
	// and then accept the channel.
	channelSecret(g, ns, "wa-secrets", map[string]string{"appSecret": appSecretV1, "verifyToken": verifyV1 + "\n"})
	ch := whatsAppChannel(ns, "wa", phoneA, "wa-secrets")
	g.Expect(k8s.Create(ctx, ch)).To(Succeed())
	syncRole(g, tn)
	g.Consistently(func() int { return w.handshake("wa", verifyV1) }, 2*time.Second, interval).Should(Equal(http.StatusNotFound),
		"a channel the operator has not accepted yet is not served")
	setReady(g, ns, "wa", true, platformv1.ReasonChannelAccepted)
	g.Eventually(func() int { return w.handshake("wa", verifyV1) }, timeout, interval).Should(Equal(http.StatusOK),
		"a Ready channel is served (the verify token's trailing newline is ignored)")
	g.Expect(w.handshake("wa", "wrong-token")).To(Equal(http.StatusForbidden))

	g.Expect(w.deliver("wa", appSecretV1, waDelivery(phoneA, "wamid.first"))).To(Equal(http.StatusOK))
	g.Expect(w.storedMessageIDs(g)).To(Equal([]string{"wamid.first"}))
	g.Expect(w.deliver("wa", "not-the-secret", waDelivery(phoneA, "wamid.forged"))).To(Equal(http.StatusUnauthorized))

	// Rotate both secrets in place: no restart, no channel change.
	var s corev1.Secret
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "wa-secrets"}, &s)).To(Succeed())
	s.Data = map[string][]byte{"appSecret": []byte(appSecretV2), "verifyToken": []byte(verifyV2)}
	g.Expect(k8s.Update(ctx, &s)).To(Succeed())
	rotated := time.Now()
	g.Eventually(func() int { return w.handshake("wa", verifyV2) }, timeout, interval).Should(Equal(http.StatusOK),
		"the rotated verify token is in force")
	t.Logf("rotation in force after %s", time.Since(rotated).Round(time.Millisecond))
	g.Expect(w.handshake("wa", verifyV1)).To(Equal(http.StatusForbidden), "the old verify token is refused")
	g.Expect(w.deliver("wa", appSecretV1, waDelivery(phoneA, "wamid.old-secret"))).To(Equal(http.StatusUnauthorized),
		"the old app secret's signature is refused")
	g.Expect(w.deliver("wa", appSecretV2, waDelivery(phoneA, "wamid.new-secret"))).To(Equal(http.StatusOK),
		"the new app secret's signature is accepted")
	g.Expect(w.storedMessageIDs(g)).To(ConsistOf("wamid.first", "wamid.new-secret"))

	// The operator refuses the channel (another tenant claimed the number first).
	setReady(g, ns, "wa", false, platformv1.ReasonConflict)
	g.Eventually(func() int { return w.handshake("wa", verifyV2) }, timeout, interval).Should(Equal(http.StatusNotFound),
		"a channel in Conflict is not served")
	g.Expect(w.deliver("wa", appSecretV2, waDelivery(phoneA, "wamid.in-conflict"))).To(Equal(http.StatusNotFound))
	g.Expect(w.storedMessageIDs(g)).To(ConsistOf("wamid.first", "wamid.new-secret"), "nothing stored while in Conflict")

	// Accepted again, then the spec changes: not served until the operator has judged
	// the new generation (it could now claim another tenant's number).
	setReady(g, ns, "wa", true, platformv1.ReasonChannelAccepted)
	g.Eventually(func() int { return w.handshake("wa", verifyV2) }, timeout, interval).Should(Equal(http.StatusOK))
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ch), ch)).To(Succeed())
	patch := client.MergeFrom(ch.DeepCopy())
	ch.Spec.GraphAPIBaseURL = "http://127.0.0.1:9"
	g.Expect(k8s.Patch(ctx, ch, patch)).To(Succeed())
	g.Eventually(func() int { return w.handshake("wa", verifyV2) }, timeout, interval).Should(Equal(http.StatusNotFound),
		"a Ready verdict for an older generation does not serve the new spec")
	setReady(g, ns, "wa", true, platformv1.ReasonChannelAccepted)
	g.Eventually(func() int { return w.handshake("wa", verifyV2) }, timeout, interval).Should(Equal(http.StatusOK))

	// Deleted: 404, nothing stored.
	g.Expect(k8s.Delete(ctx, ch)).To(Succeed())
	g.Eventually(func() int { return w.handshake("wa", verifyV2) }, timeout, interval).Should(Equal(http.StatusNotFound),
		"a deleted channel is not served")
	g.Expect(w.deliver("wa", appSecretV2, waDelivery(phoneA, "wamid.after-delete"))).To(Equal(http.StatusNotFound))
	g.Expect(w.storedMessageIDs(g)).To(ConsistOf("wamid.first", "wamid.new-secret"))

	noSecretsLogged(t, w, appSecretV1, appSecretV2, verifyV1, verifyV2, phoneA)
}

// The worker reads only what its Role grants: a Ready channel whose Secret the operator
// has not yet added to resourceNames is not served (the read is Forbidden) until it is,
// and then within seconds. Another tenant's channels and prefix are not this worker's.
func TestLeastPrivilegeAndIsolation(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	acme := tenantNS(t, g, "initech")
	globex := tenantNS(t, g, "globex")
	w := startWorker(t, g, acme)

	// A channel of another tenant, Ready, with a Secret this worker may not read.
	channelSecret(g, globex.NamespaceName(), "gx-secrets", map[string]string{"appSecret": appSecretV1, "verifyToken": verifyV1})
	g.Expect(k8s.Create(ctx, whatsAppChannel(globex.NamespaceName(), "gx", "222222222222222", "gx-secrets"))).To(Succeed())
	syncRole(g, globex)
	setReady(g, globex.NamespaceName(), "gx", true, platformv1.ReasonChannelAccepted)

	// This tenant's channel, Ready, but the Role does not name its Secret yet.
	channelSecret(g, acme.NamespaceName(), "in-secrets", map[string]string{"appSecret": appSecretV1, "verifyToken": verifyV1})
	g.Expect(k8s.Create(ctx, whatsAppChannel(acme.NamespaceName(), "in", "333333333333333", "in-secrets"))).To(Succeed())
	setReady(g, acme.NamespaceName(), "in", true, platformv1.ReasonChannelAccepted)
	g.Consistently(func() int { return w.handshake("in", verifyV1) }, 3*time.Second, interval).Should(Equal(http.StatusNotFound),
		"a channel whose Secret the Role does not grant is not served")

	syncRole(g, acme)
	g.Eventually(func() int { return w.handshake("in", verifyV1) }, timeout, interval).Should(Equal(http.StatusOK),
		"served once the Role names its Secret, without a restart")
	g.Expect(w.deliver("in", appSecretV1, waDelivery("333333333333333", "wamid.initech"))).To(Equal(http.StatusOK))

	// Never another namespace's channel, on either path; never another tenant's prefix.
	g.Expect(w.get("/webhooks/meta/gx?hub.mode=subscribe&hub.challenge=1&hub.verify_token=" + verifyV1)).To(Equal(http.StatusNotFound))
	other := *w
	other.tenant = "globex"
	g.Expect(other.handshake("in", verifyV1)).To(Equal(http.StatusNotFound), "another tenant's prefix")
	g.Expect(other.deliver("in", appSecretV1, waDelivery("333333333333333", "wamid.misrouted"))).To(Equal(http.StatusNotFound))
	g.Expect(w.storedMessageIDs(g)).To(Equal([]string{"wamid.initech"}))

	// The Secret itself deleted: the channel stops being served as soon as its watch says so, even
	// before the operator notices.
	g.Expect(k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: acme.NamespaceName(), Name: "in-secrets"}})).To(Succeed())
	g.Eventually(func() int { return w.handshake("in", verifyV1) }, timeout, interval).Should(Equal(http.StatusNotFound))

	noSecretsLogged(t, w, appSecretV1, verifyV1, "333333333333333")
}

// Two channels of one namespace for the same number, both Ready for a moment (the
// operator's verdicts move faster than the worker's events): the one served first keeps
// the number; the other takes over within seconds once the first is gone.
func TestAccountHandover(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	tn := tenantNS(t, g, "umbrella")
	ns := tn.NamespaceName()
	w := startWorker(t, g, tn)
	channelSecret(g, ns, "u-secrets", map[string]string{"appSecret": appSecretV1, "verifyToken": verifyV1})
	first := whatsAppChannel(ns, "first", "555555555555555", "u-secrets")
	g.Expect(k8s.Create(ctx, first)).To(Succeed())
	syncRole(g, tn)
	setReady(g, ns, "first", true, platformv1.ReasonChannelAccepted)
	g.Eventually(func() int { return w.handshake("first", verifyV1) }, timeout, interval).Should(Equal(http.StatusOK))

	g.Expect(k8s.Create(ctx, whatsAppChannel(ns, "second", "555555555555555", "u-secrets"))).To(Succeed())
	setReady(g, ns, "second", true, platformv1.ReasonChannelAccepted)
	g.Consistently(func() int { return w.handshake("second", verifyV1) }, 2*time.Second, interval).Should(Equal(http.StatusNotFound),
		"the number is served by the first channel")
	g.Expect(w.handshake("first", verifyV1)).To(Equal(http.StatusOK))

	g.Expect(k8s.Delete(ctx, first)).To(Succeed())
	g.Eventually(func() int { return w.handshake("second", verifyV1) }, timeout, interval).Should(Equal(http.StatusOK),
		"the second channel takes the number over")
	g.Expect(w.handshake("first", verifyV1)).To(Equal(http.StatusNotFound))
	g.Expect(w.logs.String()).To(ContainSubstring("AccountServedByAnotherChannel"))
}
