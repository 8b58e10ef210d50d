package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/healthtable"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

// reportMedia writes a media report as the worker, once its Role's grant has
// reached the authorizer (a moment after the tenant is provisioned).
func reportMedia(g Gomega, worker client.Client, ns string, rep workerreport.Media) {
	g.Eventually(func() error { return testenv.ReportMedia(context.Background(), worker, ns, rep) }, timeout, interval).Should(Succeed())
}

// mediaOf waits until the channel's MediaFetching condition has the reason, stamped
// with the channel's generation, and returns it.
func mediaOf(g Gomega, ns, name, reason string) *metav1.Condition {
	var c *metav1.Condition
	g.Eventually(func(g Gomega) {
		ch := mchGet(g, ns, name)
		c = meta.FindStatusCondition(ch.Status.Conditions, platformv1.ConditionMediaFetching)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(reason), "message: %s", c.Message)
		g.Expect(c.ObservedGeneration).To(Equal(ch.Generation))
	}, timeout, interval).Should(Succeed())
	return c
}

// mediaEvents lists the channel's Events of a reason, as the API server holds them.
func mediaEvents(g Gomega, ns, name, reason string) []eventsv1.Event {
	var evs eventsv1.EventList
	g.Expect(k8s.List(context.Background(), &evs, client.InNamespace(ns))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range evs.Items {
		if e.Regarding.Kind == "MetaChannel" && e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

func tokenRefusedGauge(g Gomega, channel string) float64 {
	v, found, err := testenv.MetricValue("omniflow_metachannel_media_token_refused", "channel", channel)
	g.Expect(err).NotTo(HaveOccurred())
	if !found {
		return -1
	}
	return v
}

// A token Meta refused, as the worker reports it, turns the channel's MediaFetching
// False with reason TokenRefused and a message naming the Secret key to fix (never
// the token), one Warning Event and the metric; the channel stays Ready and kstatus
// Current, since its messages are still ingested. Once the worker reports success the
// condition, the metric and a Normal Event say fetching resumed. A channel without a
// token says MetadataOnly, an Instagram one FetchedByURL.
func TestARefusedTokenIsRaisedOnTheChannelUntilTheWorkerFetchesAgain(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := mchTenant(t, g, "media-token")
	const token = "EAAG-refused-token-0d3b"
	mchSecret(g, ns, "meta-app", "media-token", map[string]string{"appSecret": mchAppSecret, "verifyToken": mchVerifyToken, "accessToken": token})
	withToken := mchWhatsApp(ns, "wa-media-token", "5100201", "meta-app")
	withToken.Spec.AccessTokenRef = &platformv1.SecretKeyRef{Name: "meta-app", Key: "accessToken"}
	noToken := mchWhatsApp(ns, "wa-media-none", "5100202", "meta-app")
	ig := mchInstagram(ns, "ig-media", "5100203", "meta-app")
	for _, ch := range []*platformv1.MetaChannel{withToken, noToken, ig} {
		g.Expect(k8s.Create(ctx, ch)).To(Succeed())
	}
	mediaOf(g, ns, withToken.Name, platformv1.ReasonMediaFetching)
	none := mediaOf(g, ns, noToken.Name, platformv1.ReasonMediaMetadataOnly)
	g.Expect(none.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(none.Message).To(ContainSubstring("metadata only"))
	g.Expect(mediaOf(g, ns, ig.Name, platformv1.ReasonMediaFetchedByURL).Status).To(Equal(metav1.ConditionTrue))
	g.Eventually(func() float64 { return tokenRefusedGauge(g, withToken.Name) }, timeout, interval).Should(Equal(0.0))

	// kstatus (the library Flux uses) reads a served channel whose media stays
	// metadata only as Current: a choice of the platform team, not a fault.
	g.Expect(healthtable.Check(mchGet(g, ns, noToken.Name))).To(Succeed())
	u, err := healthtable.Unstructured(mchGet(g, ns, noToken.Name))
	g.Expect(err).NotTo(HaveOccurred())
	res, err := status.Compute(u)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Status).To(Equal(status.CurrentStatus))

	// Meta refuses the token.
	worker := workerClient(g, ns)
	refusedAt := metav1.NewTime(time.Date(2026, 6, 2, 9, 30, 0, 0, time.UTC))
	rep := workerreport.Media{ReportedAt: refusedAt, Pending: 4, OldestPendingAt: &refusedAt,
		Channels: map[string]workerreport.MediaChannel{withToken.Name: {TokenRefusedAt: &refusedAt}, noToken.Name: {NoToken: true}}}
	reportMedia(g, worker, ns, rep)
	c := mediaOf(g, ns, withToken.Name, platformv1.ReasonMediaTokenRefused)
	g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(c.Message).To(And(ContainSubstring(`key "accessToken" of Secret meta-app`), ContainSubstring("2026-06-02T09:30:00Z"), Not(ContainSubstring(token))))
	mchExpectReady(g, ns, withToken.Name, metav1.ConditionTrue, platformv1.ReasonChannelAccepted)
	g.Expect(healthtable.Check(mchGet(g, ns, withToken.Name))).To(Succeed(), "a refused token leaves the channel Current for kstatus")
	g.Eventually(func() float64 { return tokenRefusedGauge(g, withToken.Name) }, timeout, interval).Should(Equal(1.0))
	g.Eventually(func() []eventsv1.Event { return mediaEvents(g, ns, withToken.Name, "MediaTokenRefused") }, timeout, interval).Should(HaveLen(1))
	ev := mediaEvents(g, ns, withToken.Name, "MediaTokenRefused")[0]
	g.Expect(ev.Type).To(Equal(corev1.EventTypeWarning))
	g.Expect(ev.Note).To(And(ContainSubstring("meta-app"), Not(ContainSubstring(token))))
	g.Expect(mediaEvents(g, ns, noToken.Name, "MediaTokenRefused")).To(BeEmpty(), "NoToken is no refusal")

	// The worker goes on reporting (counts move, the refusal is the same one): no
	// second Event, not even as a series.
	rep.Pending, rep.ReportedAt = 5, metav1.NewTime(refusedAt.Add(time.Minute))
	reportMedia(g, worker, ns, rep)
	g.Expect(k8s.Patch(ctx, mchGet(g, ns, withToken.Name), client.RawPatch(types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"example.test/touched":"yes"}}}`)))).To(Succeed())
	g.Consistently(func(g Gomega) {
		evs := mediaEvents(g, ns, withToken.Name, "MediaTokenRefused")
		g.Expect(evs).To(HaveLen(1))
		g.Expect(evs[0].Series).To(BeNil())
	}, 2*time.Second, interval).Should(Succeed())

	// A new token fetches again: the worker clears the refusal.
	rep.Channels = map[string]workerreport.MediaChannel{noToken.Name: {NoToken: true}}
	rep.Pending, rep.OldestPendingAt, rep.Fetched = 0, nil, 5
	reportMedia(g, worker, ns, rep)
	g.Expect(mediaOf(g, ns, withToken.Name, platformv1.ReasonMediaFetching).Status).To(Equal(metav1.ConditionTrue))
	g.Eventually(func() float64 { return tokenRefusedGauge(g, withToken.Name) }, timeout, interval).Should(Equal(0.0))
	g.Eventually(func() []eventsv1.Event { return mediaEvents(g, ns, withToken.Name, "MediaFetchResumed") }, timeout, interval).Should(HaveLen(1))

	// A channel that goes takes its series with it.
	g.Expect(k8s.Delete(ctx, withToken)).To(Succeed())
	g.Eventually(func() float64 { return tokenRefusedGauge(g, withToken.Name) }, timeout, interval).Should(Equal(-1.0))
}

// The worker's shared-files counts reach the Tenant's status.files; a malformed
// report leaves the last good one.
func TestTenantStatusShowsTheWorkersFileCounts(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := mchTenant(t, g, "media-counts")
	at := metav1.NewTime(time.Date(2026, 6, 2, 10, 0, 0, 0, time.UTC))
	oldest := metav1.NewTime(at.Add(-20 * time.Minute))
	reportMedia(g, workerClient(g, ns), ns, workerreport.Media{ReportedAt: at, Pending: 3, OldestPendingAt: &oldest,
		Fetched: 40, Failed: 2, MetadataOnly: 7, Blobs: 38, Bytes: 5 << 20})
	g.Eventually(func(g Gomega) {
		f := getTenant(g, "media-counts").Status.Files
		g.Expect(f).NotTo(BeNil())
		g.Expect(f.ReportedAt.Time).To(BeTemporally("==", at.Time))
		g.Expect(f.OldestPendingAt.Time).To(BeTemporally("==", oldest.Time))
		g.Expect([]int64{f.Pending, f.Fetched, f.Failed, f.MetadataOnly, f.StoredContents, f.StoredBytes}).To(Equal([]int64{3, 40, 2, 7, 38, 5 << 20}))
	}, timeout, interval).Should(Succeed())

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: platformv1.WorkerReportName}}
	g.Expect(k8s.Patch(ctx, cm, client.RawPatch(types.MergePatchType, []byte(`{"data":{"media":"{\"pending\":-5}"}}`)))).To(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(getTenant(g, "media-counts").Status.Files).To(HaveField("Pending", int64(3)))
	}, 2*time.Second, interval).Should(Succeed())
}
