package ingest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

const (
	secret      = "test_app_secret_0123456789abcdef"
	verifyToken = "tenant-a-verify-7f3c"
	fixtureDir  = "../meta/testdata/fixtures"
	extraDir    = "../meta/testdata/extra"
)

// Channel names per platform, with the ids the shared fixtures use.
var testChannels = []channels.Channel{
	{Name: "wa", Platform: meta.WhatsApp, WhatsApp: &channels.WhatsAppIDs{PhoneNumberID: "123456789012345", BusinessAccountID: "109876543210987"},
		AppSecret: secret, VerifyToken: verifyToken},
	{Name: "page", Platform: meta.Messenger, Messenger: &channels.MessengerIDs{PageID: "104857600123456"}, AppSecret: secret, VerifyToken: "page-token"},
	{Name: "ig", Platform: meta.Instagram, Instagram: &channels.InstagramIDs{AccountID: "17841400000000001"}, AppSecret: secret, VerifyToken: "ig-token"},
}

func channelFor(file string) string {
	switch {
	case strings.Contains(file, "whatsapp"):
		return "wa"
	case strings.Contains(file, "messenger"):
		return "page"
	}
	return "ig"
}

// syncBuffer collects log lines from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) add(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(line + "\n")
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	t     testing.TB
	srv   *Server
	http  *httptest.Server
	store *sqlite.Store
	logs  *syncBuffer
	m     *Metrics
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	return newEnvWith(t, opts, testChannels)
}

// newEnvWith is newEnv serving the channels chs.
func newEnvWith(t testing.TB, opts Options, chs []channels.Channel) *env {
	t.Helper()
	reg := channels.NewRegistry()
	if err := reg.Replace(chs); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, logs: &syncBuffer{}, m: NewMetrics()}
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{Observer: e.m})
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	opts.Registry, opts.Metrics = reg, e.m
	// Log everything, at every verbosity, to check it for personal data.
	opts.Log = funcr.New(func(prefix, args string) { e.logs.add(prefix + " " + args) }, funcr.Options{Verbosity: 10})
	e.srv = NewServer(opts)
	e.srv.SetStore(st)
	e.http = httptest.NewServer(e.srv.Handler())
	t.Cleanup(func() {
		e.http.Close()
		_ = st.Close()
	})
	return e
}

func (e *env) post(channel string, body []byte, sig string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.http.URL+"/webhooks/meta/"+channel, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set(meta.SignatureHeader, sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) postSigned(channel string, body []byte) int {
	e.t.Helper()
	code, _ := e.post(channel, body, meta.Sign([]byte(secret), body))
	return code
}

func (e *env) dump() storetest.Dump { return storetest.Export(e.t, e.store, nil) }

func (e *env) stored() int {
	d := e.dump()
	return len(d.Contacts) + len(d.Messages) + len(d.Statuses) + len(d.Receipts) + len(d.Files)
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readmeSignatures are the fixture README's X-Hub-Signature-256 vectors.
func readmeSignatures(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtureDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	re := regexp.MustCompile("^\\| `([^`]+\\.json)` \\| \\d+ \\| `(sha256=[0-9a-f]{64})`")
	out := map[string]string{}
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = m[2]
		}
	}
	return out
}

// expectedStored is what a fixture must leave in the store when posted to its channel:
// the parser's records (their exact shape is asserted in internal/meta) for the parts
// this channel owns, stamped with the channel name.
func expectedStored(t *testing.T, body []byte, chName string) storetest.Dump {
	t.Helper()
	var ch channels.Channel
	for _, c := range testChannels {
		if c.Name == chName {
			ch = c
		}
	}
	parts, err := meta.Split(body)
	if err != nil {
		t.Fatal(err)
	}
	var b meta.Batch
	for i := range parts {
		if !ch.Owns(&parts[i]) {
			continue
		}
		p, err := parts[i].Parse()
		if err != nil {
			t.Fatal(err)
		}
		b.Append(&p.Batch)
	}
	b.SetChannel(chName)
	for i := range b.Leads {
		b.Leads[i].Token = "" // a credential: stored, never exported
	}
	return storetest.Dump{Contacts: b.Contacts, Messages: b.Messages, Statuses: b.Statuses, Receipts: b.Receipts, Files: b.Files, Leads: b.Leads}
}

func TestFixturesOverHTTP(t *testing.T) {
	t.Parallel()
	sigs := readmeSignatures(t)
	// result label and number of stored records, per fixture
	want := map[string]struct {
		result  string
		records int
		ignored string // kind/reason counted, if any
	}{
		"instagram-comment.json":                               {ResultStored, 2, ""},
		"instagram-mention-in-comment.json":                    {ResultAcknowledged, 0, "instagram.mentions/" + ReasonUnstoredKind},
		"instagram-dashboard-test-event-changes-format.json":   {ResultAcknowledged, 0, "instagram.messages/" + ReasonForeignAccount},
		"instagram-dm-text.json":                               {ResultStored, 2, ""},
		"instagram-echo.json":                                  {ResultStored, 2, ""},
		"instagram-story-mention.json":                         {ResultStored, 3, ""},
		"messenger-attachment-image.json":                      {ResultStored, 3, ""},
		"messenger-delivery-and-read-batch.json":               {ResultStored, 3, ""},
		"messenger-echo.json":                                  {ResultStored, 2, ""},
		"messenger-postback.json":                              {ResultStored, 3, ""},
		"messenger-text.json":                                  {ResultStored, 2, ""},
		"whatsapp-account-update-account-deleted.json":         {ResultAcknowledged, 0, "whatsapp.account_update/" + ReasonUnstoredKind},
		"whatsapp-account-update-partner-app-uninstalled.json": {ResultAcknowledged, 0, "whatsapp.account_update/" + ReasonForeignAccount},
		"whatsapp-audio-voice.json":                            {ResultStored, 3, ""},
		"whatsapp-button-template-quick-reply.json":            {ResultStored, 2, ""},
		"whatsapp-document.json":                               {ResultStored, 3, ""},
		"whatsapp-image.json":                                  {ResultStored, 3, ""},
		"whatsapp-interactive-button-reply.json":               {ResultStored, 2, ""},
		"whatsapp-interactive-list-reply.json":                 {ResultStored, 2, ""},
		"whatsapp-location.json":                               {ResultStored, 2, ""},
		"whatsapp-reaction-removed.json":                       {ResultStored, 2, ""},
		"whatsapp-reaction.json":                               {ResultStored, 2, ""},
		"whatsapp-status-delivered.json":                       {ResultStored, 1, ""},
		"whatsapp-status-failed.json":                          {ResultStored, 1, ""},
		"whatsapp-status-read.json":                            {ResultStored, 1, ""},
		"whatsapp-status-sent-v23-conversation.json":           {ResultStored, 1, ""},
		"whatsapp-sticker.json":                                {ResultStored, 3, ""},
		"whatsapp-text-unicode-wire-compact.json":              {ResultStored, 2, ""},
		"whatsapp-text.json":                                   {ResultStored, 2, ""},
		"whatsapp-unsupported-with-errors.json":                {ResultStored, 2, ""},
		"whatsapp-value-level-errors.json":                     {ResultAcknowledged, 0, "whatsapp.errors/" + ReasonUnstoredKind},
	}
	if len(sigs) != len(want) {
		t.Fatalf("README lists %d fixtures, the table %d", len(sigs), len(want))
	}
	for file, w := range want {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			body := readFile(t, filepath.Join(fixtureDir, file))
			ch := channelFor(file)
			if code, _ := e.post(ch, body, sigs[file]); code != http.StatusOK {
				t.Fatalf("POST = %d, want 200", code)
			}
			if got := counterValue(t, e.m.deliveries.WithLabelValues(w.result)); got != 1 {
				t.Errorf("deliveries{result=%s} = %v, want 1", w.result, got)
			}
			got := e.dump()
			if n := len(got.Contacts) + len(got.Messages) + len(got.Statuses) + len(got.Receipts) + len(got.Files) + len(got.Leads); n != w.records {
				t.Errorf("stored %d records, want %d: %+v", n, w.records, got)
			}
			if exp := expectedStored(t, body, ch); !reflect.DeepEqual(exp, got) {
				t.Errorf("stored records differ from the normalized ones\n got: %+v\nwant: %+v", got, exp)
			}
			if w.ignored != "" {
				kind, reason, _ := strings.Cut(w.ignored, "/")
				if v := counterValue(t, e.m.ignored.WithLabelValues(kind, reason)); v != 1 {
					t.Errorf("ignored{%s,%s} = %v, want 1", kind, reason, v)
				}
			}
		})
	}
}

func TestSignatureRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	body := readFile(t, filepath.Join(fixtureDir, "whatsapp-text.json"))
	good := meta.Sign([]byte(secret), body)
	cases := map[string]struct {
		body []byte
		sig  string
	}{
		"missing":          {body, ""},
		"other secret":     {body, meta.Sign([]byte("not-the-secret"), body)},
		"verify token key": {body, meta.Sign([]byte(verifyToken), body)},
		"tampered body":    {bytes.Replace(body, []byte("shipped"), []byte("shipper"), 1), good},
		"malformed":        {body, "sha256=xyz"},
		"sha1 only":        {body, "sha1=2fe9d106718e753ecd2ff264ada1fa7451eee4d5"},
		"other channel's":  {body, meta.Sign([]byte(secret+"x"), body)},
	}
	for name, tc := range cases {
		if code, _ := e.post("wa", tc.body, tc.sig); code != http.StatusUnauthorized {
			t.Errorf("%s: got %d, want 401", name, code)
		}
	}
	if n := e.stored(); n != 0 {
		t.Fatalf("unsigned deliveries stored %d records", n)
	}
	if got := counterValue(t, e.m.deliveries.WithLabelValues(ResultUnauthorized)); got != float64(len(cases)) {
		t.Errorf("unauthorized count %v", got)
	}
	if code, _ := e.post("wa", body, good); code != http.StatusOK || e.stored() == 0 {
		t.Fatalf("valid delivery: %d", code)
	}
}

func TestHandshake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	get := func(path string) (int, string, string) {
		resp, err := http.Get(e.http.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Content-Type")
	}
	code, body, ctype := get("/webhooks/meta/wa?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=tenant-a-verify-7f3c")
	if code != 200 || body != "1158201444" || !strings.HasPrefix(ctype, "text/plain") {
		t.Fatalf("valid handshake: %d %q %q", code, body, ctype)
	}
	// A non-numeric challenge is echoed verbatim (never parsed).
	if code, body, _ := get("/webhooks/meta/wa?hub.mode=subscribe&hub.challenge=abc%20XYZ&hub.verify_token=tenant-a-verify-7f3c&extra=1"); code != 200 || body != "abc XYZ" {
		t.Fatalf("string challenge: %d %q", code, body)
	}
	for _, q := range []string{
		"hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=wrong",
		"hub.mode=subscribe&hub.challenge=1158201444",
		"hub.mode=unsubscribe&hub.challenge=1158201444&hub.verify_token=tenant-a-verify-7f3c",
		"hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=page-token", // another channel's token
		"hub_mode=subscribe&hub_challenge=1158201444&hub_verify_token=tenant-a-verify-7f3c",
	} {
		code, body, _ := get("/webhooks/meta/wa?" + q)
		if code != http.StatusForbidden || strings.Contains(body, "1158201444") {
			t.Errorf("%s: %d %q, want 403 without the challenge", q, code, body)
		}
	}
	if code, _, _ := get("/webhooks/meta/nope?hub.mode=subscribe&hub.challenge=1&hub.verify_token=x"); code != http.StatusNotFound {
		t.Errorf("unknown channel: %d", code)
	}
}

func TestBodyLimitAndMalformed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{MaxBodyBytes: 1024})
	big := []byte(`{"object":"page","entry":[],"pad":"` + strings.Repeat("x", 2000) + `"}`)
	if code, _ := e.post("page", big, meta.Sign([]byte(secret), big)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("over limit with Content-Length: %d", code)
	}
	// Chunked, no Content-Length: the limit still applies while reading.
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/webhooks/meta/page", io.MultiReader(bytes.NewReader(big)))
	req.Header.Set(meta.SignatureHeader, meta.Sign([]byte(secret), big))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked over limit: %d", resp.StatusCode)
	}
	for _, body := range []string{`{"object":"page","entry":[`, `[]`, `{"entry":[]}`, `not json`, `{"object":"page","entry":"x"}`} {
		if code := e.postSigned("page", []byte(body)); code != http.StatusBadRequest {
			t.Errorf("malformed %q: %d, want 400", body, code)
		}
	}
	// Unsigned malformed JSON is a signature failure first: no parsing of unsigned bytes.
	if code, _ := e.post("page", []byte("not json"), ""); code != http.StatusUnauthorized {
		t.Errorf("unsigned malformed: %d", code)
	}
	if code := e.postSigned("nope", []byte(`{}`)); code != http.StatusNotFound {
		t.Errorf("unknown channel: %d", code)
	}
	if n := e.stored(); n != 0 {
		t.Fatalf("rejected deliveries stored %d records", n)
	}
	if got := counterValue(t, e.m.deliveries.WithLabelValues(ResultTooLarge)); got != 2 {
		t.Errorf("too_large count %v", got)
	}
}

func waDelivery(phone string, ids ...string) []byte {
	var msgs []string
	for i, id := range ids {
		msgs = append(msgs, fmt.Sprintf(`{"from":"15555550142","id":%q,"timestamp":"%d","type":"text","text":{"body":"m %d"}}`, id, 1781100000+i, i))
	}
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"109876543210987","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":%q},"contacts":[{"profile":{"name":"Ana"},"wa_id":"15555550142"}],"messages":[%s]}}]}]}`,
		phone, strings.Join(msgs, ",")))
}

func TestDuplicatesAndOutOfOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	text := readFile(t, filepath.Join(fixtureDir, "whatsapp-text.json"))
	for range 3 {
		if code := e.postSigned("wa", text); code != 200 {
			t.Fatalf("POST: %d", code)
		}
	}
	// A batch with one redelivered message and one new one.
	if code := e.postSigned("wa", waDelivery("123456789012345", "wamid.HBgLMTU1NTU1NTAxNDIVAgASGBQzQVRYVDAwMQAA==", "wamid.NEW")); code != 200 {
		t.Fatalf("mixed batch: %d", code)
	}
	if got := len(e.dump().Messages); got != 2 {
		t.Fatalf("stored %d messages, want 2", got)
	}
	if dup := counterValue(t, e.m.duplicates.WithLabelValues("WhatsApp")); dup != 3 {
		t.Errorf("duplicates = %v, want 3", dup)
	}
	if n := counterValue(t, e.m.messages.WithLabelValues("WhatsApp")); n != 2 {
		t.Errorf("messages stored = %v, want 2", n)
	}
	// Statuses arriving read, delivered, sent: read stays.
	for _, f := range []string{"whatsapp-status-read.json", "whatsapp-status-delivered.json", "whatsapp-status-sent-v23-conversation.json"} {
		if code := e.postSigned("wa", readFile(t, filepath.Join(fixtureDir, f))); code != 200 {
			t.Fatalf("%s: %d", f, code)
		}
	}
	st := e.dump().Statuses
	if len(st) != 1 || st[0].State != meta.StateRead {
		t.Fatalf("statuses %+v: want one, read", st)
	}
	if stale := counterValue(t, e.m.statuses.WithLabelValues("stale")); stale != 2 {
		t.Errorf("stale statuses = %v, want 2", stale)
	}
}

func TestBatchAttributedPerChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	body := readFile(t, filepath.Join(extraDir, "whatsapp-batch-two-numbers.json"))
	if code := e.postSigned("wa", body); code != 200 {
		t.Fatalf("POST: %d", code)
	}
	d := e.dump()
	if len(d.Messages) != 2 || d.Messages[0].ID != "wamid.EXTRA-OWN-1" || d.Messages[1].ID != "wamid.EXTRA-OWN-2" || len(d.Contacts) != 1 {
		t.Fatalf("stored %+v: want only this number's two messages and contact", d)
	}
	if v := counterValue(t, e.m.ignored.WithLabelValues("whatsapp.messages", ReasonForeignAccount)); v != 1 {
		t.Errorf("foreign changes counted %v, want 1", v)
	}
	// The same delivery on the URL of another channel of the same app (here a
	// Messenger one) is routed to the number it names: nothing new, nothing lost.
	if code := e.postSigned("page", body); code != 200 || len(e.dump().Messages) != 2 {
		t.Fatalf("cross-platform delivery: %d", code)
	}
}

// A front door forwards single parts: handling them one by one gives the same store.
func TestIngestPartsAlone(t *testing.T) {
	t.Parallel()
	whole, parts := newEnv(t, Options{}), newEnv(t, Options{})
	ch, _ := parts.srv.opts.Registry.Lookup("wa")
	for _, f := range []string{filepath.Join(extraDir, "whatsapp-batch-two-numbers.json"), filepath.Join(fixtureDir, "whatsapp-image.json")} {
		body := readFile(t, f)
		whole.postSigned("wa", body)
		split, err := meta.Split(body)
		if err != nil {
			t.Fatal(err)
		}
		for i := range split {
			if _, err := parts.srv.Ingest(context.Background(), ch, split[i:i+1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if a, b := whole.dump(), parts.dump(); !reflect.DeepEqual(a, b) || len(a.Messages) != 3 {
		t.Fatalf("whole: %+v\nparts: %+v", a, b)
	}
}

func TestInstagramDeletion(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	dm := readFile(t, filepath.Join(fixtureDir, "instagram-dm-text.json"))
	del := readFile(t, filepath.Join(extraDir, "instagram-deleted.json"))
	e.postSigned("ig", dm)
	if code := e.postSigned("ig", del); code != 200 {
		t.Fatalf("deletion: %d", code)
	}
	if n := len(e.dump().Messages); n != 0 {
		t.Fatalf("message still stored after unsend")
	}
	// Meta redelivers the original after the unsend: it stays deleted.
	e.postSigned("ig", dm)
	if n := len(e.dump().Messages); n != 0 {
		t.Fatalf("redelivery resurrected an unsent message")
	}
}

// Once graceful shutdown has begun the worker is no longer ready (/readyz 503), but a
// delivery that still reaches it (on a connection kept alive before its listener
// closed) is stored and answered 200, not 503: its store is open until every request
// has been answered.
func TestDeliveriesWhileStoppingAreStored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.srv.SetStopping()
	resp, err := http.Get(e.http.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while stopping: %d, want 503", resp.StatusCode)
	}
	if code := e.postSigned("wa", readFile(t, filepath.Join(fixtureDir, "whatsapp-text.json"))); code != http.StatusOK {
		t.Fatalf("delivery while stopping: %d, want 200", code)
	}
	if n := len(e.dump().Messages); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}
}

func TestStoreFailureIsNotAcknowledged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	if code := e.postSigned("wa", readFile(t, filepath.Join(fixtureDir, "whatsapp-text.json"))); code != http.StatusServiceUnavailable {
		t.Fatalf("delivery with a closed store: %d, want 503", code)
	}
	// Unstored kinds need no store: still 200, never a 5xx.
	if code := e.postSigned("wa", readFile(t, filepath.Join(fixtureDir, "whatsapp-account-update-account-deleted.json"))); code != 200 {
		t.Fatalf("unstored kind with a closed store: %d", code)
	}
}

// messagingDelivery is a Messenger or Instagram delivery of the given messaging items.
func messagingDelivery(object, account string, items ...string) []byte {
	return []byte(fmt.Sprintf(`{"object":%q,"entry":[{"id":%q,"time":1781100300700,"messaging":[%s]}]}`, object, account, strings.Join(items, ",")))
}

// A delivery receipt naming an empty message id once made a status the store refused:
// the whole delivery was answered 503, forever, and its valid message never stored.
func TestEmptyMidDeliveryReceipt(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ object, channel, account, kind string }{
		{"page", "page", "104857600123456", "messenger.delivery"},
		{"instagram", "ig", "17841400000000001", "instagram.delivery"},
	} {
		t.Run(c.channel, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			body := messagingDelivery(c.object, c.account,
				fmt.Sprintf(`{"sender":{"id":"6012345678901234"},"recipient":{"id":%q},"timestamp":1781100300600,"message":{"mid":"m_valid","text":"hello"}}`, c.account),
				fmt.Sprintf(`{"sender":{"id":"6012345678901234"},"recipient":{"id":%q},"timestamp":1781100300650,"delivery":{"mids":[""],"watermark":1781100300512}}`, c.account))
			if code := e.postSigned(c.channel, body); code != http.StatusOK {
				t.Fatalf("POST = %d, want 200", code)
			}
			d := e.dump()
			if len(d.Messages) != 1 || d.Messages[0].ID != "m_valid" {
				t.Fatalf("stored messages %+v, want m_valid", d.Messages)
			}
			if len(d.Statuses) != 0 || len(d.Receipts) != 1 {
				t.Errorf("stored %d statuses and %d receipts, want the watermark receipt only", len(d.Statuses), len(d.Receipts))
			}
			if v := counterValue(t, e.m.ignored.WithLabelValues(c.kind, ReasonInvalid)); v != 1 {
				t.Errorf("ignored{%s,invalid} = %v, want 1", c.kind, v)
			}
			if v := counterValue(t, e.m.deliveries.WithLabelValues(ResultStored)); v != 1 {
				t.Errorf("deliveries{stored} = %v, want 1", v)
			}
		})
	}
}

// One malformed message in a WhatsApp change is left out alone: its siblings are stored.
func TestMalformedWhatsAppMessageLeftOutAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"109876543210987","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"123456789012345"},` +
		`"contacts":[{"profile":{"name":"Ana"},"wa_id":"15555550142"}],"messages":[` +
		`{"from":"15555550142","id":"wamid.bad","timestamp":"soon","type":"text","text":{"body":"x"}},` +
		`{"from":"15555550142","id":"wamid.good","timestamp":"1781100000","type":"text","text":{"body":"y"}}]}}]}]}`)
	if code := e.postSigned("wa", body); code != http.StatusOK {
		t.Fatalf("POST = %d, want 200", code)
	}
	d := e.dump()
	if len(d.Messages) != 1 || d.Messages[0].ID != "wamid.good" || len(d.Contacts) != 1 {
		t.Fatalf("stored %+v, want wamid.good and its contact", d)
	}
	if v := counterValue(t, e.m.ignored.WithLabelValues("whatsapp.message", ReasonInvalid)); v != 1 {
		t.Errorf("ignored{whatsapp.message,invalid} = %v, want 1", v)
	}
	if v := counterValue(t, e.m.ignored.WithLabelValues("whatsapp.messages", ReasonInvalid)); v != 0 {
		t.Errorf("the change was counted invalid as a whole (%v)", v)
	}
}

// Should the parser ever yield a record the store refuses, only that part is left out and
// counted; a store that fails is still answered 503.
func TestPartTheStoreWouldRefuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.srv.parse = func(p *meta.Part) (meta.Parsed, error) {
		parsed, err := p.Parse()
		for i := range parsed.Batch.Statuses {
			parsed.Batch.Statuses[i].MessageID = ""
		}
		return parsed, err
	}
	body := messagingDelivery("page", "104857600123456",
		`{"sender":{"id":"6012345678901234"},"recipient":{"id":"104857600123456"},"timestamp":1781100300600,"message":{"mid":"m_valid","text":"hello"}}`,
		`{"sender":{"id":"6012345678901234"},"recipient":{"id":"104857600123456"},"timestamp":1781100300650,"delivery":{"mids":["m_out"],"watermark":1781100300512}}`)
	if code := e.postSigned("page", body); code != http.StatusOK {
		t.Fatalf("POST = %d, want 200", code)
	}
	d := e.dump()
	if len(d.Messages) != 1 || d.Messages[0].ID != "m_valid" || len(d.Statuses)+len(d.Receipts) != 0 {
		t.Fatalf("stored %+v, want m_valid alone", d)
	}
	if v := counterValue(t, e.m.ignored.WithLabelValues("messenger.messaging", ReasonInvalid)); v != 1 {
		t.Errorf("ignored{messenger.messaging,invalid} = %v, want 1", v)
	}
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	if code := e.postSigned("page", body); code != http.StatusServiceUnavailable {
		t.Fatalf("POST with a closed store = %d, want 503", code)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	reg := channels.NewRegistry()
	srv := NewServer(Options{Registry: reg, Log: logr.Discard()})
	h := httptest.NewServer(srv.Handler())
	defer h.Close()
	status := func(path string) int {
		resp, err := http.Get(h.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status("/healthz") != 200 || status("/readyz") != 503 {
		t.Fatal("before the store opens: want healthz 200, readyz 503")
	}
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv.SetStore(st)
	if status("/readyz") != 200 {
		t.Fatal("readyz after store open")
	}
	srv.SetStopping()
	if status("/readyz") != 503 {
		t.Fatal("readyz while stopping")
	}
	if status("/metrics") != 200 {
		t.Fatal("metrics")
	}
}

// After every fixture has gone through, neither the logs (at full verbosity) nor the
// metrics contain a phone number, user id, name or message text.
func TestNoPersonalDataInLogsOrMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	extra, _ := filepath.Glob(filepath.Join(extraDir, "*.json"))
	for _, f := range append(files, extra...) {
		body := readFile(t, f)
		e.postSigned(channelFor(filepath.Base(f)), body)
		e.post(channelFor(filepath.Base(f)), body, "sha256="+strings.Repeat("0", 64))
	}
	e.postSigned("wa", []byte(`{"object":"whatsapp_business_account","entry":[{"id":"109876543210987","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"123456789012345"},"messages":[{"from":"15555550142","id":"w-bad","timestamp":"Ana Souza","type":"text","text":{"body":"x"}}]}}]}]}`))
	resp, err := http.Get(e.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	logs := e.logs.String()
	if !strings.Contains(logs, "Delivery committed") {
		t.Fatalf("expected per-delivery log lines at V(1), got:\n%s", logs)
	}
	for _, secretish := range []string{"15555550142", "447700900123", "6012345678901234", "1123456789012345", "US.1349", "Ana Souza",
		"Oliver", "Portugal", "wamid.", "m_ZmFrZS", "blue dress", "123456789012345", "mia.designs", secret,
		"NMT-SECRET", "ur-checkbox", "ur-7f3a9c2e", "flyer-lisbon", "ARAkLkA8rml", "SKU-BLUE", "120363040000000001"} {
		if strings.Contains(logs, secretish) {
			t.Errorf("logs contain %q", secretish)
		}
		if bytes.Contains(metrics, []byte(secretish)) {
			t.Errorf("metrics contain %q", secretish)
		}
	}
}

var _ store.Store = (*sqlite.Store)(nil)

// The tenant's Ingress forwards /t/<tenant>/... unchanged: the worker serves the webhook
// routes under its own tenant's prefix, and nothing under another tenant's.
func TestTenantPrefix(t *testing.T) {
	t.Parallel()
	do := func(e *env, method, path string, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, e.http.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			req.Header.Set(meta.SignatureHeader, meta.Sign([]byte(secret), body))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const hs = "?hub.mode=subscribe&hub.challenge=4242&hub.verify_token=" + verifyToken

	e := newEnv(t, Options{Tenant: "acme"})
	if code, body := do(e, http.MethodGet, "/t/acme/webhooks/meta/wa"+hs, nil); code != 200 || body != "4242" {
		t.Fatalf("handshake under own prefix: %d %q", code, body)
	}
	if code, body := do(e, http.MethodGet, "/t/globex/webhooks/meta/wa"+hs, nil); code != http.StatusNotFound || strings.Contains(body, "4242") {
		t.Fatalf("handshake under another tenant's prefix: %d %q, want 404", code, body)
	}
	if code, _ := do(e, http.MethodPost, "/t/globex/webhooks/meta/wa", waDelivery("123456789012345", "wamid.other")); code != http.StatusNotFound {
		t.Fatalf("delivery under another tenant's prefix: %d, want 404", code)
	}
	if n := e.stored(); n != 0 {
		t.Fatalf("a delivery for another tenant stored %d records", n)
	}
	if got := counterValue(t, e.m.deliveries.WithLabelValues(ResultUnknownChannel)); got != 1 {
		t.Errorf("deliveries{result=unknown_channel} = %v, want 1", got)
	}
	if code, _ := do(e, http.MethodPost, "/t/acme/webhooks/meta/nope", waDelivery("123456789012345", "wamid.nope")); code != http.StatusNotFound {
		t.Fatalf("unknown channel under own prefix: %d, want 404", code)
	}
	if code, _ := do(e, http.MethodPost, "/t/acme/webhooks/meta/wa", waDelivery("123456789012345", "wamid.own")); code != http.StatusOK {
		t.Fatalf("delivery under own prefix: %d, want 200", code)
	}
	if d := e.dump(); len(d.Messages) != 1 || d.Messages[0].ID != "wamid.own" {
		t.Fatalf("stored messages = %+v, want only wamid.own", d.Messages)
	}

	// Without a tenant (a misconfigured worker) no prefixed route matches anything.
	bare := newEnv(t, Options{})
	if code, _ := do(bare, http.MethodGet, "/t/acme/webhooks/meta/wa"+hs, nil); code != http.StatusNotFound {
		t.Fatalf("prefixed handshake without a tenant: %d, want 404", code)
	}
}

// The media fetcher is woken after a commit that stored new files, never before it and
// never for a delivery without them (the fetch itself is not on the webhook path).
func TestACommitWithNewFilesWakesTheFetcher(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	var woken atomic.Int64
	e.srv.SetFilesCommitted(func() {
		if e.srv.Busy() {
			woken.Add(1) // told within the delivery, after its commit
		}
	})
	if code := e.postSigned("wa", readFile(t, filepath.Join(fixtureDir, "whatsapp-text.json"))); code != 200 {
		t.Fatalf("text: %d", code)
	}
	if n := woken.Load(); n != 0 {
		t.Fatalf("a text delivery woke the fetcher %d times", n)
	}
	image := readFile(t, filepath.Join(fixtureDir, "whatsapp-image.json"))
	for range 2 { // the redelivery stores no new file
		if code := e.postSigned("wa", image); code != 200 {
			t.Fatalf("image: %d", code)
		}
	}
	if n := woken.Load(); n != 1 {
		t.Fatalf("the fetcher was woken %d times, want once (for the new file)", n)
	}
	if e.srv.Busy() {
		t.Fatal("busy with no delivery in flight")
	}
}
