package clusterchannels_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
)

// Meta's deletion-callback vector (fixtures/meta/data-deletion-signed-request.txt) and
// the app secret it is signed with.
const (
	callbackAppSecret = "test_app_secret_0123456789abcdef"
	callbackUser      = "10160012345678901"
	callbackPayload   = `{"algorithm":"HMAC-SHA256","expires":1781107200,"issued_at":1781100000,"user_id":"10160012345678901"}`
	callbackSigned    = "iejA6Ned33yDIEQ7KmU5lQfqPVzjt-htDs7sYks_oK0.eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjE3ODExMDcyMDAsImlzc3VlZF9hdCI6MTc4MTEwMDAwMCwidXNlcl9pZCI6IjEwMTYwMDEyMzQ1Njc4OTAxIn0"
	callbackTamper    = "iejA6Ned33yDIEQ7KmU5lQfqPVzjt-htDs7sYks_oA0.eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjE3ODExMDcyMDAsImlzc3VlZF9hdCI6MTc4MTEwMDAwMCwidXNlcl9pZCI6IjEwMTYwMDEyMzQ1Njc4OTAxIn0"
)

func (w *worker) callback(channel, signed string) (int, string) {
	resp, err := http.PostForm(w.base+"/t/"+w.tenant+"/meta/data-deletion/"+channel, url.Values{meta.SignedRequestField: {signed}})
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func httpGet(g Gomega, u string) (int, string) {
	resp, err := http.Get(u)
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func deletionRequests(g Gomega, ns string) []platformv1.DeletionRequest {
	var list platformv1.DeletionRequestList
	g.ExpectWithOffset(1, k8s.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
	return list.Items
}

// Meta's callback, verified with the channel's app secret, files a DeletionRequest with
// the id in a Secret the worker creates (never in the request), answers the status URL
// and code; the operator (played here) grants the worker that Secret; the worker's
// processor finds nothing for Meta's app-scoped id, and the status page says so.
// Requests that do not verify file nothing.
func TestMetaDeletionCallbackFilesARequestAndReportsIt(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	tn := tenantNS(t, g, "dunder")
	ns := tn.NamespaceName()
	channelSecret(g, ns, "in-secrets", map[string]string{"appSecret": callbackAppSecret, "verifyToken": verifyV1})
	g.Expect(k8s.Create(ctx, whatsAppChannel(ns, "wa", "555555555555555", "in-secrets"))).To(Succeed())
	channelSecret(g, ns, platformv1.SubjectKeySecretName, map[string]string{platformv1.SubjectKeySecretKey: "0123456789abcdef0123456789abcdef"})
	syncRole(g, tn)
	setReady(g, ns, "wa", true, platformv1.ReasonChannelAccepted)
	w := startWorker(t, g, tn)
	g.Eventually(func() int { return w.handshake("wa", verifyV1) }, timeout, interval).Should(Equal(http.StatusOK))
	// An end-user's message: Meta's id must not match it, and it must survive.
	g.Expect(w.deliver("wa", callbackAppSecret, waDelivery("555555555555555", "wamid.keep"))).To(Equal(http.StatusOK))

	wrongAlg := meta.SignSignedRequest([]byte(callbackAppSecret), []byte(strings.Replace(callbackPayload, "HMAC-SHA256", "HMAC-SHA1", 1)))
	for name, signed := range map[string]string{"tampered": callbackTamper, "wrong algorithm": wrongAlg, "garbage": "not.a-signed-request", "other secret": meta.SignSignedRequest([]byte("other"), []byte(callbackPayload))} {
		code, body := w.callback("wa", signed)
		g.Expect(code).To(Equal(http.StatusBadRequest), "%s: %s", name, body)
	}
	g.Consistently(func() []platformv1.DeletionRequest { return deletionRequests(g, ns) }, time.Second, interval).Should(BeEmpty(),
		"nothing is filed for a request that does not verify")

	code, body := w.callback("wa", callbackSigned)
	g.Expect(code).To(Equal(http.StatusOK), body)
	var answer struct {
		URL  string `json:"url"`
		Code string `json:"confirmation_code"`
	}
	g.Expect(json.Unmarshal([]byte(body), &answer)).To(Succeed())
	g.Expect(answer.Code).To(MatchRegexp(`^[0-9a-f]{24}$`))
	g.Expect(answer.URL).To(Equal(w.base + "/t/" + w.tenant + "/meta/deletion-status/" + answer.Code))

	drs := deletionRequests(g, ns)
	g.Expect(drs).To(HaveLen(1))
	dr := drs[0]
	g.Expect(dr.Name).To(HavePrefix(subjecterasure.MetaCallbackPrefix))
	g.Expect(dr.Spec.Source).To(Equal(platformv1.SourceMetaCallback))
	g.Expect(dr.Spec.Platform).To(Equal(platformv1.PlatformWhatsApp))
	g.Expect(dr.Status.ConfirmationCode).To(Equal(answer.Code))
	raw, err := json.Marshal(dr)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(raw)).NotTo(ContainSubstring(callbackUser), "the identifier is never in the request")

	var subject corev1.Secret
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: dr.Spec.SubjectSecretRef.Name}, &subject)).To(Succeed())
	g.Expect(string(subject.Data[dr.Spec.SubjectSecretRef.Key])).To(Equal(callbackUser))
	g.Expect(subject.OwnerReferences).To(ContainElement(HaveField("UID", dr.UID)), "the Secret goes with its request")

	// Before the operator accepts it: the status page says it was received.
	status, page := httpGet(g, answer.URL)
	g.Expect(status).To(Equal(http.StatusOK))
	g.Expect(page).To(ContainSubstring("Status: Pending"))
	g.Expect(page).NotTo(ContainSubstring(callbackUser))

	// The operator's part: the Role names the subject Secret, the request is Pending.
	syncRole(g, tn)
	patch := client.MergeFrom(dr.DeepCopy())
	received := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	dr.Status.Phase, dr.Status.ReceivedAt = platformv1.DeletionPending, &received
	g.Expect(k8s.Status().Patch(ctx, &dr, patch)).To(Succeed())

	g.Eventually(func(g Gomega) {
		var got platformv1.DeletionRequest
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&dr), &got)).To(Succeed())
		g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionCompleted))
		g.Expect(got.Status.ConfirmationCode).To(Equal(answer.Code), "the worker keeps the code it gave Meta")
		g.Expect(got.Status.Erased).NotTo(BeNil())
		g.Expect(*got.Status.Erased).To(BeZero(), "Meta's app-scoped id matches nothing stored")
	}, timeout, interval).Should(Succeed(), "logs:\n%s", w.logs)

	status, page = httpGet(g, answer.URL)
	g.Expect(status).To(Equal(http.StatusOK))
	g.Expect(page).To(ContainSubstring("Status: Completed"))
	g.Expect(page).To(ContainSubstring("No data linked to this identifier was found"))
	g.Expect(page).To(ContainSubstring("Received: " + received.UTC().Format(time.RFC3339)))
	g.Expect(w.storedMessageIDs(g)).To(ConsistOf("wamid.keep"))

	status, _ = httpGet(g, w.base+"/t/"+w.tenant+"/meta/deletion-status/0123456789abcdef01234567")
	g.Expect(status).To(Equal(http.StatusNotFound))
	status, _ = httpGet(g, w.base+"/t/globex/meta/deletion-status/"+answer.Code)
	g.Expect(status).To(Equal(http.StatusNotFound), "another tenant's path")
	noSecretsLogged(t, w, callbackUser, callbackSigned, callbackAppSecret)
}
