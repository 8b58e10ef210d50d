package ingest

import (
	"bufio"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// fixtureSignedRequest is the valid vector of the shared fixture
// data-deletion-signed-request.txt (signed with the channels' test secret).
func fixtureSignedRequest(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtureDir, "data-deletion-signed-request.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	found := false
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := strings.TrimSpace(sc.Text())
		if found && line != "" {
			return line
		}
		found = found || strings.HasPrefix(line, "signed_request (valid):")
	}
	t.Fatal("the fixture lost its valid vector")
	return ""
}

func (e *env) postForm(path string, form url.Values) (int, string) {
	e.t.Helper()
	resp, err := http.PostForm(e.http.URL+path, form)
	if err != nil {
		e.t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Standalone (no cluster to file in), the callback still verifies every request: what
// does not verify is a 400, what does is a stable 501, never a retryable 5xx.
func TestDataDeletionCallbackStandalone(t *testing.T) {
	e := newEnv(t, Options{Tenant: "acme"})
	valid := fixtureSignedRequest(t)
	sigPart, payloadPart, _ := strings.Cut(valid, ".")
	tampered := sigPart[:len(sigPart)-2] + "A0." + payloadPart
	sha1 := meta.SignSignedRequest([]byte(secret), []byte(`{"algorithm":"HMAC-SHA1","issued_at":1781100000,"user_id":"10160012345678901"}`))
	for _, tc := range []struct {
		name, path, signed string
		want               int
	}{
		{"valid", "/meta/data-deletion/wa", valid, http.StatusNotImplemented},
		{"valid under the tenant's path", "/t/acme/meta/data-deletion/page", valid, http.StatusNotImplemented},
		{"tampered signature", "/meta/data-deletion/wa", tampered, http.StatusBadRequest},
		{"wrong algorithm", "/meta/data-deletion/wa", sha1, http.StatusBadRequest},
		{"garbage", "/meta/data-deletion/wa", "garbage", http.StatusBadRequest},
		{"no signed_request", "/meta/data-deletion/wa", "", http.StatusBadRequest},
		{"unknown channel", "/meta/data-deletion/nope", valid, http.StatusNotFound},
		{"another tenant's path", "/t/globex/meta/data-deletion/wa", valid, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{}
			if tc.signed != "" {
				form.Set(meta.SignedRequestField, tc.signed)
			}
			if code, body := e.postForm(tc.path, form); code != tc.want {
				t.Fatalf("POST %s: %d %q, want %d", tc.path, code, body, tc.want)
			}
		})
	}
	// Meta posts a form: the same value in the query string or as JSON is not read.
	resp, err := http.Post(e.http.URL+"/meta/data-deletion/wa", "application/json", strings.NewReader(`{"signed_request":"`+valid+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("JSON body: %d, want 400", resp.StatusCode)
	}
	resp, err = http.Get(e.http.URL + "/meta/data-deletion/wa?" + url.Values{meta.SignedRequestField: {valid}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d, want 405", resp.StatusCode)
	}
	resp, err = http.Get(e.http.URL + "/meta/deletion-status/abc123")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented {
		t.Fatalf("status page standalone: %d, want 501", resp.StatusCode)
	}
	if e.stored() != 0 {
		t.Fatal("the callback stored something")
	}
	if logs := e.logs.String(); strings.Contains(logs, "10160012345678901") || strings.Contains(logs, payloadPart) {
		t.Fatalf("the user id or the signed request was logged:\n%s", logs)
	}
}

func TestDeletionStatusURL(t *testing.T) {
	s := NewServer(Options{})
	r, _ := http.NewRequest(http.MethodPost, "http://hooks.example.com/t/acme/meta/data-deletion/wa", nil)
	r.SetPathValue("tenant", "acme")
	r.Header.Set("X-Forwarded-Proto", "https, http")
	if got, want := s.deletionStatusURL(r, "c0de"), "https://hooks.example.com/t/acme/meta/deletion-status/c0de"; got != want {
		t.Fatalf("derived: %s, want %s", got, want)
	}
	r, _ = http.NewRequest(http.MethodPost, "http://10.0.0.7:8080/meta/data-deletion/wa", nil)
	r.Header.Set("X-Forwarded-Proto", "gopher")
	if got, want := s.deletionStatusURL(r, "c0de"), "http://10.0.0.7:8080/meta/deletion-status/c0de"; got != want {
		t.Fatalf("plain: %s, want %s", got, want)
	}
	s = NewServer(Options{PublicBaseURL: "https://privacy.example.com/t/acme/"})
	if got, want := s.deletionStatusURL(r, "c0de"), "https://privacy.example.com/t/acme/meta/deletion-status/c0de"; got != want {
		t.Fatalf("configured: %s, want %s", got, want)
	}
}

func TestDeletionStatusPage(t *testing.T) {
	at := func(s string) *metav1.Time {
		tm, _ := time.Parse(time.RFC3339, s)
		return &metav1.Time{Time: tm}
	}
	dr := &platformv1.DeletionRequest{Status: platformv1.DeletionRequestStatus{
		ConfirmationCode: "c0de", ReceivedAt: at("2026-06-10T12:00:00Z"), Deadline: at("2026-07-10T12:00:00Z"),
		SubjectRef: "hmac-sha256:feed",
	}}
	page := DeletionStatusPage(dr)
	for _, want := range []string{"Status: Pending", "Received: 2026-06-10T12:00:00Z", "waiting", "2026-07-10T12:00:00Z"} {
		if !strings.Contains(page, want) {
			t.Errorf("pending page lacks %q:\n%s", want, page)
		}
	}
	dr.Status.Phase, dr.Status.CompletedAt = platformv1.DeletionCompleted, at("2026-06-10T12:00:05Z")
	dr.Status.Erased = &platformv1.ErasedCounts{}
	page = DeletionStatusPage(dr)
	for _, want := range []string{"Status: Completed", "Completed: 2026-06-10T12:00:05Z", "No data linked to this identifier was found"} {
		if !strings.Contains(page, want) {
			t.Errorf("completed page lacks %q:\n%s", want, page)
		}
	}
	dr.Status.Erased.Messages = 3
	if page = DeletionStatusPage(dr); strings.Contains(page, "No data") || !strings.Contains(page, "was erased") {
		t.Errorf("a request that erased data reads:\n%s", page)
	}
	if strings.Contains(page, "feed") || strings.Contains(page, "essages") {
		t.Errorf("the page shows the subject reference or counts:\n%s", page)
	}
}

// Meta's notices that a business removed the app or deleted its account are handed to
// Offboard once per delivery for the channel whose business account they name (after
// the rest is committed), whichever of the app's URLs they came in on; other deliveries
// are not.
func TestAccountRemovalNoticesOffboardTheChannel(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	e := newEnv(t, Options{Offboard: func(channel, event string) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, channel+":"+event)
	}})
	for _, f := range []string{"whatsapp-text.json", "whatsapp-account-update-partner-app-uninstalled.json", "whatsapp-account-update-account-deleted.json"} {
		if code := e.postSigned("wa", readFile(t, filepath.Join(fixtureDir, f))); code != http.StatusOK {
			t.Fatalf("%s: %d", f, code)
		}
	}
	// Posted to the URL of a channel of another business account under the same app,
	// the notice still reaches the channel it names (Meta sends account-level fields to
	// the app's default URL).
	if code := e.postSigned("page", readFile(t, filepath.Join(fixtureDir, "whatsapp-account-update-account-deleted.json"))); code != http.StatusOK {
		t.Fatalf("page: %d", code)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"wa:PARTNER_APP_UNINSTALLED", "wa:ACCOUNT_DELETED", "wa:ACCOUNT_DELETED"}; !slices.Equal(calls, want) {
		t.Fatalf("Offboard calls %v, want %v", calls, want)
	}
	if d := e.dump(); len(d.Messages) != 1 {
		t.Fatalf("%d messages stored, want the text fixture's 1", len(d.Messages))
	}
}
