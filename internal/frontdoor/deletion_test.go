package frontdoor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/forward"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// syncBuffer collects logs written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const deletionUser = "10160012345678901"

func signedRequest(user string, issuedAt int64) string {
	return meta.SignSignedRequest([]byte(appSecret), fmt.Appendf(nil, `{"algorithm":"HMAC-SHA256","issued_at":%d,"user_id":%q}`, issuedAt, user))
}

// post sends body to url with one signature header and returns the status code.
func post(t *testing.T, url string, body []byte, header, sig string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(header, sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// callback posts Meta's data-deletion form to the door at path and returns the answer.
func (d *door) callback(path, signed string) (int, string) {
	d.t.Helper()
	resp, err := http.PostForm(d.http.URL+path, url.Values{meta.SignedRequestField: {signed}})
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (d *door) get(path string) (int, string) {
	d.t.Helper()
	resp, err := http.Get(d.http.URL + path)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Meta's data-deletion callback at the app's URL, against a real API server: each
// bound tenant's worker files one MetaCallback DeletionRequest under the one code the
// front door answers; a worker down makes Meta retry, and the retry files nothing
// twice; the status page reports every tenant's request; the user id is in no log,
// no code, no field, only in each request's subject Secret.
func TestDataDeletionCallbackFilesInEveryBoundTenant(t *testing.T) {
	g := NewWithT(t)
	env, err := testenv.Start(testenv.Scheme())
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	k8s := env.Client
	for _, ns := range []string{"tenant-acme", "tenant-globex"} {
		g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}
	acme := startWorkerWith(t, "acme", acmeChannels, &subjecterasure.Desk{Client: k8s, Namespace: "tenant-acme"})
	globex := startWorkerWith(t, "globex", globexChannels, &subjecterasure.Desk{Client: k8s, Namespace: "tenant-globex"})
	logs := &syncBuffer{}
	d := newDoorWith(t, Config{App: "shared", ForwardTimeout: 10 * time.Second, Log: logr.FromSlogHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.Level(-4)}))},
		tenantOf("acme", acme, acmeChannels), tenantOf("globex", globex, globexChannels))
	requests := func(ns string) []platformv1.DeletionRequest {
		var l platformv1.DeletionRequestList
		g.Expect(k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
		return l.Items
	}
	signed := signedRequest(deletionUser, 1781100000)

	// One worker down: Meta gets an error and calls again later.
	globex.stop()
	code, body := d.callback("/meta/data-deletion", signed)
	g.Expect(code).To(Equal(http.StatusServiceUnavailable), body)
	g.Expect(requests("tenant-globex")).To(BeEmpty())
	g.Expect(requests("tenant-acme")).To(HaveLen(1), "the worker that was up filed already; logs:\n%s", logs.String())

	// Back: the retry is answered with one code, each tenant holds one request under it.
	globex.start()
	for range 2 {
		code, body = d.callback("/meta/data-deletion", signed)
		g.Expect(code).To(Equal(http.StatusOK), body)
	}
	var answer struct {
		URL  string `json:"url"`
		Code string `json:"confirmation_code"`
	}
	g.Expect(json.Unmarshal([]byte(body), &answer)).To(Succeed())
	g.Expect(answer.Code).To(MatchRegexp(`^[0-9a-f]{24}$`))
	g.Expect(answer.Code).To(Equal(forward.DeletionCode(forwardingKey, "shared", deletionUser, 1781100000)))
	g.Expect(answer.URL).To(Equal(d.http.URL + "/meta/deletion-status/" + answer.Code))
	for _, ns := range []string{"tenant-acme", "tenant-globex"} {
		drs := requests(ns)
		g.Expect(drs).To(HaveLen(1), "%s: the retries filed nothing twice", ns)
		dr := drs[0]
		g.Expect(dr.Status.ConfirmationCode).To(Equal(answer.Code), ns)
		g.Expect(dr.Spec.Source).To(Equal(platformv1.SourceMetaCallback))
		g.Expect(dr.Spec.Platform).To(Equal(platformv1.PlatformMessenger), "a Facebook user: the tenant's Messenger channel")
		g.Expect(dr.Labels).To(HaveKeyWithValue(subjecterasure.LabelApp, "shared"))
		raw, _ := json.Marshal(dr)
		g.Expect(string(raw)).NotTo(ContainSubstring(deletionUser), "the user id is in no field of the request")
		var sec corev1.Secret
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: dr.Spec.SubjectSecretRef.Name}, &sec)).To(Succeed())
		g.Expect(string(sec.Data[subjecterasure.SubjectIDKey])).To(Equal(deletionUser))
		g.Expect(sec.OwnerReferences).To(HaveLen(1))
		g.Expect(sec.OwnerReferences[0].UID).To(Equal(dr.UID))
	}

	// A later request of the same user is a request of its own.
	code, body = d.callback("/meta/data-deletion", signedRequest(deletionUser, 1781200000))
	g.Expect(code).To(Equal(http.StatusOK), body)
	g.Expect(body).NotTo(ContainSubstring(answer.Code))
	g.Expect(requests("tenant-acme")).To(HaveLen(2))

	// The status page reports both tenants' requests, the least advanced first.
	code, page := d.get("/meta/deletion-status/" + answer.Code)
	g.Expect(code).To(Equal(http.StatusOK), page)
	g.Expect(page).To(ContainSubstring("Status: Pending"))
	g.Expect(page).To(ContainSubstring("Part 1 of 2: Pending"))
	g.Expect(page).To(ContainSubstring("Part 2 of 2: Pending"))
	g.Expect(page).NotTo(Or(ContainSubstring("acme"), ContainSubstring("globex"), ContainSubstring(deletionUser)))
	complete := func(ns string) {
		for _, dr := range requests(ns) {
			if dr.Status.ConfirmationCode == answer.Code {
				dr.Status.Phase = platformv1.DeletionCompleted
				dr.Status.CompletedAt = &metav1.Time{Time: time.Date(2026, 6, 11, 8, 0, 0, 0, time.UTC)}
				g.Expect(k8s.Status().Update(ctx, &dr)).To(Succeed())
			}
		}
	}
	complete("tenant-acme")
	_, page = d.get("/meta/deletion-status/" + answer.Code)
	g.Expect(page).To(ContainSubstring("Status: Pending"), "one tenant is not done")
	g.Expect(page).To(ContainSubstring(": Completed\n  Received:"))
	complete("tenant-globex")
	_, page = d.get("/meta/deletion-status/" + answer.Code)
	g.Expect(page).To(ContainSubstring("Status: Completed"))
	g.Expect(page).To(And(ContainSubstring("Part 1 of 2: Completed"), ContainSubstring("Part 2 of 2: Completed")))
	globex.stop()
	_, page = d.get("/meta/deletion-status/" + answer.Code)
	g.Expect(page).To(ContainSubstring("Status: Pending"), "a part that cannot be asked is not done")
	g.Expect(page).To(ContainSubstring("1 part(s) could not be asked right now"))
	globex.start()
	code, _ = d.get("/meta/deletion-status/0123456789abcdef01234567")
	g.Expect(code).To(Equal(http.StatusNotFound))

	// Nothing that does not verify is filed anywhere; nor is a filing forged at a worker.
	sigPart, payloadPart, _ := strings.Cut(signed, ".")
	for _, bad := range []string{"", "garbage", sigPart[:len(sigPart)-2] + "A0." + payloadPart,
		meta.SignSignedRequest([]byte("another app"), []byte(`{"algorithm":"HMAC-SHA256","issued_at":1,"user_id":"1"}`))} {
		code, _ = d.callback("/meta/data-deletion", bad)
		g.Expect(code).To(Equal(http.StatusBadRequest))
	}
	filing, _ := json.Marshal(forward.DeletionFiling{Code: "0123456789abcdef01234567", App: "shared", Platform: "Messenger", UserID: "1"})
	for _, sig := range []string{
		forward.SignFor(forward.TenantKey(forwardingKey, "acme"), "acme", forward.PurposeDeletion, filing), // acme's credential at globex
		forward.Sign(forward.TenantKey(forwardingKey, "globex"), "globex", filing),                         // a forward's signature
	} {
		g.Expect(post(t, globex.url()+forward.DeletionPath, filing, forward.SignatureHeader, sig)).To(Equal(http.StatusUnauthorized))
	}
	g.Expect(requests("tenant-acme")).To(HaveLen(2))
	g.Expect(requests("tenant-globex")).To(HaveLen(2))
	g.Expect(logs.String()).NotTo(ContainSubstring(deletionUser))
	g.Expect(logs.String()).NotTo(ContainSubstring(payloadPart))
}

// With no tenant bound to the app, Meta's callback gets a code whose status page says,
// with 200, that nothing of the user was held: recognised from the code alone (nothing
// is stored, and the page says the same once a tenant is bound), while a code the door
// did not give this way stays unknown.
func TestDataDeletionWithNoTenantSaysNothingWasHeld(t *testing.T) {
	g := NewWithT(t)
	logs := &syncBuffer{}
	d := newDoorWith(t, Config{App: "shared", ForwardTimeout: 10 * time.Second, Log: logr.FromSlogHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.Level(-4)}))},
		[]Tenant{}...)
	var answer struct {
		URL  string `json:"url"`
		Code string `json:"confirmation_code"`
	}
	for range 2 { // Meta's retry gets the same code
		code, body := d.callback("/meta/data-deletion", signedRequest(deletionUser, 1781100000))
		g.Expect(code).To(Equal(http.StatusOK), body)
		g.Expect(json.Unmarshal([]byte(body), &answer)).To(Succeed())
		g.Expect(answer.Code).To(Equal(forward.NothingHeldCode(forwardingKey, "shared", deletionUser, 1781100000)))
	}
	g.Expect(answer.Code).To(MatchRegexp(`^[0-9a-f]{24}$`))
	g.Expect(answer.URL).To(Equal(d.http.URL + "/meta/deletion-status/" + answer.Code))

	code, page := d.get("/meta/deletion-status/" + answer.Code)
	g.Expect(code).To(Equal(http.StatusOK), page)
	g.Expect(page).To(ContainSubstring("Confirmation code: " + answer.Code))
	g.Expect(page).To(ContainSubstring("Status: Completed"))
	g.Expect(page).To(ContainSubstring("No data of this user was held"))
	g.Expect(page).NotTo(ContainSubstring(deletionUser))

	// Codes the door did not give for "nothing held" stay unknown: made up, edited, a
	// filed request's code, another app's.
	edited := []byte(answer.Code)
	edited[0] ^= 1
	for _, other := range []string{"0123456789abcdef01234567", string(edited),
		forward.DeletionCode(forwardingKey, "shared", deletionUser, 1781100000),
		forward.NothingHeldCode(forwardingKey, "other", deletionUser, 1781100000)} {
		code, page = d.get("/meta/deletion-status/" + other)
		g.Expect(code).To(Equal(http.StatusNotFound), other)
		g.Expect(page).To(Equal("unknown confirmation code\n"))
	}

	// A tenant bound later changes nothing to what was held at the time.
	g.Expect(d.table.Replace([]Tenant{{Name: "acme", Worker: "http://127.0.0.1:1", Channels: []RouteChannel{{Platform: meta.Messenger, Messenger: acmeChannels[1].Messenger}}}})).To(Succeed())
	code, page = d.get("/meta/deletion-status/" + answer.Code)
	g.Expect(code).To(Equal(http.StatusOK), page)
	g.Expect(page).To(ContainSubstring("No data of this user was held"))
	g.Expect(logs.String()).NotTo(ContainSubstring(deletionUser))
}

// A front door that names no MetaApp cannot file requests for one: a stable 501.
func TestDataDeletionCallbackNeedsAnApp(t *testing.T) {
	d := newDoor(t, Tenant{Name: "acme", Worker: "http://127.0.0.1:1", Channels: []RouteChannel{{Platform: meta.Messenger, Messenger: acmeChannels[1].Messenger}}})
	if code, body := d.callback("/meta/data-deletion", signedRequest(deletionUser, 1)); code != http.StatusNotImplemented {
		t.Fatalf("%d %q, want 501", code, body)
	}
}

func TestDeletionPlatform(t *testing.T) {
	wa := RouteChannel{Platform: meta.WhatsApp}
	ig := RouteChannel{Platform: meta.Instagram}
	fb := RouteChannel{Platform: meta.Messenger}
	for _, tc := range []struct {
		chs  []RouteChannel
		want meta.Platform
	}{
		{[]RouteChannel{wa}, meta.WhatsApp},
		{[]RouteChannel{wa, ig}, meta.Instagram},
		{[]RouteChannel{wa, fb, ig}, meta.Messenger},
		{nil, ""},
	} {
		if got := deletionPlatform(tc.chs); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.chs, got, tc.want)
		}
	}
}

func TestOverallPhase(t *testing.T) {
	st := func(p platformv1.DeletionPhase, erased bool) forward.DeletionStatus {
		return forward.DeletionStatus{Phase: string(p), Erased: erased}
	}
	for _, tc := range []struct {
		parts       []forward.DeletionStatus
		unavailable int
		want        platformv1.DeletionPhase
		erased      bool
	}{
		{[]forward.DeletionStatus{st(platformv1.DeletionCompleted, false), st(platformv1.DeletionCompleted, true)}, 0, platformv1.DeletionCompleted, true},
		{[]forward.DeletionStatus{st(platformv1.DeletionCompleted, false), st(platformv1.DeletionRunning, false)}, 0, platformv1.DeletionRunning, false},
		{[]forward.DeletionStatus{st(platformv1.DeletionCompleted, false), st(platformv1.DeletionFailed, false)}, 0, platformv1.DeletionFailed, false},
		{[]forward.DeletionStatus{st(platformv1.DeletionCompleted, false)}, 1, platformv1.DeletionPending, false},
		{[]forward.DeletionStatus{st("Odd", false), st(platformv1.DeletionCompleted, false)}, 0, platformv1.DeletionPending, false},
	} {
		got, erased := overallPhase(tc.parts, tc.unavailable)
		if got != tc.want || erased != tc.erased {
			t.Errorf("%v +%d unavailable: %s %v, want %s %v", tc.parts, tc.unavailable, got, erased, tc.want, tc.erased)
		}
	}
}
