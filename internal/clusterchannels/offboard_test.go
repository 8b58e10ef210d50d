package clusterchannels_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

func fixture(g Gomega, name string) []byte {
	b, err := os.ReadFile(filepath.Join("..", "meta", "testdata", "fixtures", name))
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return b
}

// Meta's account_update saying the business removed the app takes that channel (and
// only that one) out of service with an Event on it, and it stays out, across changes
// of its Secret, until its spec changes, whichever of the app's URLs the notice came in
// on. A notice for another business account changes nothing.
func TestAccountRemovalTakesTheChannelOut(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	tn := tenantNS(t, g, "vandelay")
	ns := tn.NamespaceName()
	channelSecret(g, ns, "vd-secrets", map[string]string{"appSecret": appSecretV1, "verifyToken": verifyV1})
	g.Expect(k8s.Create(ctx, whatsAppChannel(ns, "wa", "777777777777771", "vd-secrets"))).To(Succeed())
	other := whatsAppChannel(ns, "wa-other", "777777777777772", "vd-secrets")
	other.Spec.WhatsApp.BusinessAccountID = "200000000000002"
	g.Expect(k8s.Create(ctx, other)).To(Succeed())
	syncRole(g, tn)
	setReady(g, ns, "wa", true, platformv1.ReasonChannelAccepted)
	setReady(g, ns, "wa-other", true, platformv1.ReasonChannelAccepted)
	w := startWorker(t, g, tn)
	for _, ch := range []string{"wa", "wa-other"} {
		g.Eventually(func() int { return w.handshake(ch, verifyV1) }, timeout, interval).Should(Equal(http.StatusOK))
	}

	// ACCOUNT_DELETED for the first channel's business account, posted to the other
	// channel's URL (same app secret, as Meta sends account-level fields to the app's
	// default URL): it reaches the channel it names, and only that one. (The
	// PARTNER_APP_UNINSTALLED form, naming the WABA in waba_info, is covered by the
	// ingest package's tests.)
	g.Expect(w.deliver("wa-other", appSecretV1, fixture(g, "whatsapp-account-update-account-deleted.json"))).To(Equal(http.StatusOK))
	g.Eventually(func() int { return w.handshake("wa", verifyV1) }, timeout, interval).Should(Equal(http.StatusNotFound))
	g.Expect(w.deliver("wa", appSecretV1, waDelivery("777777777777771", "wamid.after"))).To(Equal(http.StatusNotFound))
	g.Eventually(func(g Gomega) {
		var list eventsv1.EventList
		g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		var found []eventsv1.Event
		for _, e := range list.Items {
			if e.Regarding.Kind == "MetaChannel" && e.Reason == "BusinessLeft" {
				found = append(found, e)
			}
		}
		g.Expect(found).To(HaveLen(1))
		g.Expect(found[0].Regarding.Name).To(Equal("wa"))
		g.Expect(found[0].Type).To(Equal("Warning"))
		g.Expect(found[0].Note).To(ContainSubstring("ACCOUNT_DELETED"))
	}, timeout, interval).Should(Succeed(), "logs:\n%s", w.logs)
	// A change of its Secret (which syncs the channel again) does not bring it back; the
	// other channel stays.
	var s corev1.Secret
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "vd-secrets"}, &s)).To(Succeed())
	s.Data["unrelated"] = []byte("x")
	g.Expect(k8s.Update(ctx, &s)).To(Succeed())
	g.Consistently(func() int { return w.handshake("wa", verifyV1) }, 3*time.Second, interval).Should(Equal(http.StatusNotFound))
	g.Expect(w.handshake("wa-other", verifyV1)).To(Equal(http.StatusOK))
	g.Expect(w.storedMessageIDs(g)).NotTo(ContainElement("wamid.after"))

	// Reconnected with another number: a new generation, judged Ready by the operator.
	var mc platformv1.MetaChannel
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "wa"}, &mc)).To(Succeed())
	patch := client.MergeFrom(mc.DeepCopy())
	mc.Spec.WhatsApp.PhoneNumberID = "777777777777773"
	g.Expect(k8s.Patch(ctx, &mc, patch)).To(Succeed())
	setReady(g, ns, "wa", true, platformv1.ReasonChannelAccepted)
	g.Eventually(func() int { return w.handshake("wa", verifyV1) }, timeout, interval).Should(Equal(http.StatusOK))
	g.Expect(w.deliver("wa", appSecretV1, waDelivery("777777777777773", "wamid.back"))).To(Equal(http.StatusOK))
	g.Expect(strings.Count(w.logs.String(), "channel taken out of service")).To(Equal(1))
}
