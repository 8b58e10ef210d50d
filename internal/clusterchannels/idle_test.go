package clusterchannels_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// requestCounter records every request the worker sends to the API server, watches
// apart: a watch is one long request that costs the server nothing while nothing
// changes, anything else is work.
type requestCounter struct {
	mu      sync.Mutex
	watches int
	others  []string
}

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		c.mu.Lock()
		if w := req.URL.Query().Get("watch"); w == "true" || w == "1" {
			c.watches++
		} else {
			c.others = append(c.others, req.Method+" "+req.URL.RequestURI())
		}
		c.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

// since returns the non-watch requests sent after mark (a value of len).
func (c *requestCounter) since(mark int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.others[mark:])
}

func (c *requestCounter) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.others)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// idleWindow is how long an idle worker is watched for requests. A worker that polls
// anything at an interval up to this long is caught.
const idleWindow = 12 * time.Second

// An idle worker (a served channel, a finished DeletionRequest, media fetching on,
// nothing happening) sends the API server nothing but its watches: no list of
// DeletionRequests, no read of a channel's Secret, no rewrite of its media report.
func TestAnIdleWorkerSendsNoRequestButItsWatches(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	tn := tenantNS(t, g, "idle")
	ns := tn.NamespaceName()
	channelSecret(g, ns, "idle-secrets", map[string]string{"appSecret": appSecretV1, "verifyToken": verifyV1})
	g.Expect(k8s.Create(ctx, whatsAppChannel(ns, "wa", "666666666666666", "idle-secrets"))).To(Succeed())
	channelSecret(g, ns, platformv1.SubjectKeySecretName, map[string]string{platformv1.SubjectKeySecretKey: "0123456789abcdef0123456789abcdef"})
	dr := fileRequest(g, ns, "done-before", "15550100001")
	syncRole(g, tn)
	setReady(g, ns, "wa", true, platformv1.ReasonChannelAccepted)
	// The report ConfigMap, created empty as the operator does; the worker patches its
	// media key. Its report is checked every second here (30 s by default), so that the
	// idle window covers many checks: each must find nothing changed and write nothing.
	report := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: platformv1.WorkerReportName}}
	g.Expect(k8s.Create(ctx, report)).To(Succeed())
	w := startWorker(t, g, tn, withMediaFetch(ns, time.Second))
	g.Eventually(func() int { return w.handshake("wa", verifyV1) }, timeout, interval).Should(Equal(http.StatusOK))
	g.Eventually(func(g Gomega) {
		var got platformv1.DeletionRequest
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(dr), &got)).To(Succeed())
		g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionCompleted))
	}, timeout, interval).Should(Succeed(), "logs:\n%s", w.logs)
	// The fetcher runs: its first report is written (a state, not a heartbeat).
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(report), report)).To(Succeed())
		g.Expect(report.Data).To(HaveKey(platformv1.WorkerReportMediaKey))
	}, timeout, interval).Should(Succeed(), "logs:\n%s", w.logs)
	written := report.ResourceVersion

	mark := w.requests.mark()
	start := time.Now()
	g.Consistently(func() []string { return w.requests.since(mark) }, idleWindow, interval).Should(BeEmpty(),
		"an idle worker sends only watches")
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(report), report)).To(Succeed())
	g.Expect(report.ResourceVersion).To(Equal(written), "the media report is not rewritten")
	n := len(w.requests.since(mark))
	t.Logf("idle worker: %d non-watch requests in %s (%.3f/s)", n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
}

// fileRequest files a DeletionRequest as a support agent would and accepts it (Pending)
// as the operator would; the operator's Role grant is the caller's syncRole.
func fileRequest(g Gomega, ns, name, subject string) *platformv1.DeletionRequest {
	ctx := context.Background()
	channelSecretOfType(g, ns, name+"-subject", platformv1.SubjectSecretType, map[string]string{"id": subject})
	dr := &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: platformv1.DeletionRequestSpec{
			Platform:         platformv1.PlatformWhatsApp,
			SubjectSecretRef: platformv1.SecretKeyRef{Name: name + "-subject", Key: "id"},
		},
	}
	g.ExpectWithOffset(1, k8s.Create(ctx, dr)).To(Succeed())
	patch := client.MergeFrom(dr.DeepCopy())
	received := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	dr.Status.Phase, dr.Status.ReceivedAt = platformv1.DeletionPending, &received
	g.ExpectWithOffset(1, k8s.Status().Patch(ctx, dr, patch)).To(Succeed())
	return dr
}
