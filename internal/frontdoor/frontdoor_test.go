package frontdoor

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/forward"
	"github.com/omniflowcrm/omniflow-operator/internal/ingest"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
)

const (
	appSecret   = "test_app_secret_0123456789abcdef"
	verifyToken = "shared-app-verify-token"
	fixtureDir  = "../meta/testdata/fixtures"
	extraDir    = "../meta/testdata/extra"
)

var forwardingKey = bytes.Repeat([]byte("k"), forward.MinKeyBytes)

// Two tenants behind one app. acme has the first number of the shared fixtures' WABA and
// their Page; globex the second number (another WABA of its own in its MetaChannel) and
// a second Page.
var (
	acmeChannels = []channels.Channel{
		{Name: "wa", Platform: meta.WhatsApp, WhatsApp: &channels.WhatsAppIDs{PhoneNumberID: "123456789012345", BusinessAccountID: "109876543210987"}, AppSecret: appSecret, VerifyToken: "t"},
		{Name: "page", Platform: meta.Messenger, Messenger: &channels.MessengerIDs{PageID: "104857600123456"}, AppSecret: appSecret, VerifyToken: "t"},
	}
	globexChannels = []channels.Channel{
		{Name: "wa", Platform: meta.WhatsApp, WhatsApp: &channels.WhatsAppIDs{PhoneNumberID: "999999999999999", BusinessAccountID: "209876543210987"}, AppSecret: appSecret, VerifyToken: "t"},
		{Name: "page", Platform: meta.Messenger, Messenger: &channels.MessengerIDs{PageID: "104857600999999"}, AppSecret: appSecret, VerifyToken: "t"},
	}
)

// worker is a tenant's real worker server on a real socket, which can be stopped and
// started again on the same address.
type worker struct {
	t        *testing.T
	tenant   string
	addr     string
	srv      *ingest.Server
	store    *sqlite.Store
	http     *http.Server
	forwards atomic.Int64 // requests that reached the forward endpoint
	// gate, when set, is called with each forward before the worker handles it.
	gate     atomic.Pointer[func()]
	offboard []string
	mu       sync.Mutex
}

func startWorker(t *testing.T, tenant string, chs []channels.Channel) *worker {
	t.Helper()
	return startWorkerWith(t, tenant, chs, nil)
}

// startWorkerWith starts a worker that files data-deletion requests with desk (in a
// cluster), or answers 501 for them when desk is nil (standalone).
func startWorkerWith(t *testing.T, tenant string, chs []channels.Channel, desk *subjecterasure.Desk) *worker {
	t.Helper()
	reg := channels.NewRegistry()
	if err := reg.Replace(chs); err != nil {
		t.Fatal(err)
	}
	w := &worker{t: t, tenant: tenant}
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.store = st
	w.srv = ingest.NewServer(ingest.Options{Registry: reg, Log: logr.Discard(), Tenant: tenant,
		ForwardKey: forward.TenantKey(forwardingKey, tenant), Deletions: desk,
		Offboard: func(ch, ev string) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.offboard = append(w.offboard, ch+":"+ev)
		}})
	w.srv.SetStore(st)
	w.start()
	t.Cleanup(func() {
		w.stop()
		_ = st.Close()
	})
	return w
}

func (w *worker) start() {
	w.t.Helper()
	addr := w.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		w.t.Fatalf("listen: %v", err)
	}
	w.addr = ln.Addr().String()
	h := w.srv.Handler()
	hs := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == forward.Path {
			w.forwards.Add(1)
			if g := w.gate.Load(); g != nil {
				(*g)()
			}
		}
		h.ServeHTTP(rw, r)
	})}
	w.http = hs
	go func() { _ = hs.Serve(ln) }()
}

func (w *worker) stop() {
	if w.http != nil {
		_ = w.http.Close()
		w.http = nil
	}
}

func (w *worker) url() string { return "http://" + w.addr }

// messages lists the ids of the stored messages, sorted.
func (w *worker) messages() []string {
	var ids []string
	for _, m := range storetest.Export(w.t, w.store, nil).Messages {
		ids = append(ids, m.Channel+"/"+m.ID)
	}
	sort.Strings(ids)
	return ids
}

type door struct {
	t     *testing.T
	srv   *Server
	http  *httptest.Server
	table *Table
}

func newDoor(t *testing.T, tenants ...Tenant) *door {
	t.Helper()
	return newDoorWith(t, Config{Log: logr.Discard()}, tenants...)
}

// newDoorWith starts a front door configured by cfg, with the test's app secret, verify
// token, forwarding key and a table of tenants.
func newDoorWith(t *testing.T, cfg Config, tenants ...Tenant) *door {
	t.Helper()
	d := &door{t: t, table: &Table{}}
	cfg.AppSecret, cfg.VerifyToken, cfg.ForwardingKey, cfg.Table = []byte(appSecret), verifyToken, forwardingKey, d.table
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.srv = srv
	if tenants != nil {
		if err := d.table.Replace(tenants); err != nil {
			t.Fatal(err)
		}
	}
	d.http = httptest.NewServer(srv.Handler())
	t.Cleanup(d.http.Close)
	return d
}

func (d *door) post(body []byte, sig string) int {
	d.t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.http.URL+"/webhooks/meta", bytes.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	if sig != "" {
		req.Header.Set(meta.SignatureHeader, sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func (d *door) postSigned(body []byte) int {
	return d.post(body, meta.Sign([]byte(appSecret), body))
}

func tenantOf(name string, w *worker, chs []channels.Channel) Tenant {
	tn := Tenant{Name: name, Worker: w.url()}
	for _, ch := range chs {
		tn.Channels = append(tn.Channels, RouteChannel{Platform: ch.Platform, WhatsApp: ch.WhatsApp, Messenger: ch.Messenger, Instagram: ch.Instagram})
	}
	return tn
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mixed joins several deliveries of one object into one.
func mixed(t *testing.T, bodies ...[]byte) []byte {
	t.Helper()
	out, err := meta.Combine(bodies...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func waText(phone, id string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"109876543210987","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":%q},"contacts":[{"profile":{"name":"Ana"},"wa_id":"15555550142"}],"messages":[{"from":"15555550142","id":%q,"timestamp":"1781100000","type":"text","text":{"body":"hi"}}]}}]}]}`, phone, id))
}

type setup struct {
	acme, globex *worker
	door         *door
}

func twoTenants(t *testing.T) setup {
	acme, globex := startWorker(t, "acme", acmeChannels), startWorker(t, "globex", globexChannels)
	return setup{acme, globex, newDoor(t, tenantOf("acme", acme, acmeChannels), tenantOf("globex", globex, globexChannels))}
}

// A signed delivery mixing two tenants' numbers (and one of two tenants' Pages) leaves
// in each tenant's store exactly its own parts.
func TestMixedDeliveryReachesEachTenant(t *testing.T) {
	s := twoTenants(t)
	if code := s.door.postSigned(readFile(t, filepath.Join(extraDir, "whatsapp-batch-two-numbers.json"))); code != http.StatusOK {
		t.Fatalf("WhatsApp: %d", code)
	}
	text := readFile(t, filepath.Join(fixtureDir, "messenger-text.json"))
	other := bytes.ReplaceAll(bytes.ReplaceAll(text, []byte("104857600123456"), []byte("104857600999999")), []byte("m_ZmFrZS1taWQtVFhUMQ"), []byte("m_globex"))
	if code := s.door.postSigned(mixed(t, text, other)); code != http.StatusOK {
		t.Fatalf("Messenger: %d", code)
	}
	if got, want := s.acme.messages(), []string{"page/m_ZmFrZS1taWQtVFhUMQ", "wa/wamid.EXTRA-OWN-1", "wa/wamid.EXTRA-OWN-2"}; !slices.Equal(got, want) {
		t.Errorf("acme holds %v, want %v", got, want)
	}
	if got, want := s.globex.messages(), []string{"page/m_globex", "wa/wamid.EXTRA-FOREIGN-1"}; !slices.Equal(got, want) {
		t.Errorf("globex holds %v, want %v", got, want)
	}
	// One request per tenant per delivery.
	if a, g := s.acme.forwards.Load(), s.globex.forwards.Load(); a != 2 || g != 2 {
		t.Errorf("forwards: acme %d, globex %d; want 2 each", a, g)
	}
}

// With one worker down, Meta gets an error; the retried delivery, once the worker is
// back, leaves every part stored once.
func TestWorkerDownMeansRetryAndEveryPartOnce(t *testing.T) {
	s := twoTenants(t)
	body := mixed(t, waText("123456789012345", "wamid.A1"), waText("999999999999999", "wamid.G1"))
	s.globex.stop()
	if code := s.door.postSigned(body); code < 500 {
		t.Fatalf("with globex down the front door answered %d, want 5xx", code)
	}
	if got := s.acme.messages(); !slices.Equal(got, []string{"wa/wamid.A1"}) {
		t.Fatalf("acme holds %v", got)
	}
	if v := counter(t, s.door.srv.m.deliveries.WithLabelValues(ResultWorkerFailed)); v != 1 {
		t.Errorf("worker_failed deliveries %v, want 1", v)
	}
	s.globex.start()
	for range 2 { // Meta's retry, and one more for good measure
		if code := s.door.postSigned(body); code != http.StatusOK {
			t.Fatalf("retry: %d", code)
		}
	}
	if got := s.acme.messages(); !slices.Equal(got, []string{"wa/wamid.A1"}) {
		t.Errorf("acme holds %v, want its message once", got)
	}
	if got := s.globex.messages(); !slices.Equal(got, []string{"wa/wamid.G1"}) {
		t.Errorf("globex holds %v, want its message once", got)
	}
}

// Forged, unsigned and tampered deliveries are refused before anything is forwarded.
func TestUnauthenticDeliveriesAreNeverForwarded(t *testing.T) {
	s := twoTenants(t)
	body := mixed(t, waText("123456789012345", "wamid.A1"), waText("999999999999999", "wamid.G1"))
	tampered := bytes.Replace(body, []byte("wamid.G1"), []byte("wamid.G2"), 1)
	for name, tc := range map[string]struct {
		body []byte
		sig  string
	}{
		"unsigned":                 {body, ""},
		"forged (another secret)":  {body, meta.Sign([]byte("not the app secret"), body)},
		"tampered after signing":   {tampered, meta.Sign([]byte(appSecret), body)},
		"signed with the fwd key":  {body, meta.Sign(forwardingKey, body)},
		"signature header garbage": {body, "sha256=zz"},
	} {
		if code := s.door.post(tc.body, tc.sig); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	if a, g := s.acme.forwards.Load(), s.globex.forwards.Load(); a+g != 0 {
		t.Fatalf("%d forwards reached the workers", a+g)
	}
	if n := len(s.acme.messages()) + len(s.globex.messages()); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
}

// A worker accepts forwarded parts only with its own tenant's credential.
func TestForgedInternalRequestIsRefused(t *testing.T) {
	s := twoTenants(t)
	body := waText("999999999999999", "wamid.FORGED")
	post := func(sig string) int {
		req, _ := http.NewRequest(http.MethodPost, s.globex.url()+forward.Path, bytes.NewReader(body))
		if sig != "" {
			req.Header.Set(forward.SignatureHeader, sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for name, sig := range map[string]string{
		"unsigned":                        "",
		"Meta's signature (app secret)":   meta.Sign([]byte(appSecret), body),
		"acme's credential (impersonate)": forward.Sign(forward.TenantKey(forwardingKey, "acme"), "acme", body),
		"acme's credential, globex named": forward.Sign(forward.TenantKey(forwardingKey, "acme"), "globex", body),
		"another forwarding key":          forward.Sign(forward.TenantKey(bytes.Repeat([]byte("x"), 32), "globex"), "globex", body),
	} {
		if code := post(sig); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	if got := s.globex.messages(); len(got) != 0 {
		t.Fatalf("globex stored %v", got)
	}
	// The genuine credential works (the test can fail).
	if code := post(forward.Sign(forward.TenantKey(forwardingKey, "globex"), "globex", body)); code != http.StatusOK {
		t.Fatalf("genuine forward: %d", code)
	}
}

// Parts nobody serves are acknowledged, counted by reason, and stored nowhere.
func TestUnroutedPartsAreAcknowledgedAndCounted(t *testing.T) {
	s := twoTenants(t)
	if code := s.door.postSigned(waText("777777777777777", "wamid.NOBODY")); code != http.StatusOK {
		t.Fatalf("unknown number: %d", code)
	}
	if code := s.door.postSigned([]byte(`{"object":"user","entry":[{"id":"1","changes":[{"field":"name","value":{}}]}]}`)); code != http.StatusOK {
		t.Fatalf("unknown object: %d", code)
	}
	m := s.door.srv.m.unrouted
	if v := counter(t, m.WithLabelValues("whatsapp.messages", ReasonUnknownAccount)); v != 1 {
		t.Errorf("unknown_account %v, want 1", v)
	}
	if v := counter(t, m.WithLabelValues("unknown_object", ReasonUnknownObject)); v != 1 {
		t.Errorf("unknown_object %v, want 1", v)
	}
	if a, g := s.acme.forwards.Load(), s.globex.forwards.Load(); a+g != 0 {
		t.Fatalf("%d forwards for parts nobody serves", a+g)
	}
}

// A WhatsApp account removal notice (account-level, named by its business account)
// reaches the worker of the tenant that owns the number, and takes its channel out.
func TestAccountUpdateReachesTheOwningChannel(t *testing.T) {
	s := twoTenants(t)
	if code := s.door.postSigned(readFile(t, filepath.Join(fixtureDir, "whatsapp-account-update-account-deleted.json"))); code != http.StatusOK {
		t.Fatalf("POST: %d", code)
	}
	s.acme.mu.Lock()
	defer s.acme.mu.Unlock()
	if !slices.Equal(s.acme.offboard, []string{"wa:ACCOUNT_DELETED"}) || s.globex.forwards.Load() != 0 {
		t.Fatalf("acme offboarded %v, globex got %d forwards", s.acme.offboard, s.globex.forwards.Load())
	}
}

// Until its routing table is filled, the front door answers 503, never 200.
func TestNotSyncedAnswers503(t *testing.T) {
	d := newDoor(t)
	if code := d.postSigned(waText("123456789012345", "wamid.EARLY")); code != http.StatusServiceUnavailable {
		t.Fatalf("before sync: %d, want 503", code)
	}
	resp, err := http.Get(d.http.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz before sync: %d", resp.StatusCode)
	}
	if err := d.table.Replace(nil); err != nil {
		t.Fatal(err)
	}
	if code := d.postSigned(waText("123456789012345", "wamid.EARLY")); code != http.StatusOK {
		t.Fatalf("after sync: %d, want 200", code)
	}
}

func TestHandshake(t *testing.T) {
	d := newDoor(t)
	get := func(token string) (int, string) {
		resp, err := http.Get(d.http.URL + "/webhooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=" + token)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(verifyToken); code != 200 || body != "1158201444" {
		t.Fatalf("handshake: %d %q", code, body)
	}
	if code, _ := get("wrong"); code != http.StatusForbidden {
		t.Fatalf("wrong token: %d", code)
	}
}

// An id routed to two tenants is refused, and the table keeps its previous content.
func TestTableRefusesAnIdTwice(t *testing.T) {
	var tb Table
	a := Tenant{Name: "a", Worker: "http://a", Channels: []RouteChannel{{Platform: meta.Messenger, Messenger: &channels.MessengerIDs{PageID: "1"}}}}
	if err := tb.Replace([]Tenant{a}); err != nil {
		t.Fatal(err)
	}
	b := a
	b.Name, b.Worker = "b", "http://b"
	if err := tb.Replace([]Tenant{a, b}); err == nil {
		t.Fatal("the same Page routed to two tenants was accepted")
	}
	p := meta.Part{Platform: meta.Messenger, EntryID: "1", AccountID: "1"}
	if got, _ := tb.Route(&p); len(got) != 1 || got[0].Tenant != "a" {
		t.Fatalf("route after refused replace: %v", got)
	}
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// A worker that does not answer in time fails the delivery at the forward timeout, well
// inside Meta's deadline, instead of holding Meta's request.
func TestSlowWorkerTimesOut(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	table := &Table{}
	if err := table.Replace([]Tenant{tenantOf("acme", &worker{addr: strings.TrimPrefix(slow.URL, "http://")}, acmeChannels)}); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Config{AppSecret: []byte(appSecret), VerifyToken: verifyToken, ForwardingKey: forwardingKey, Table: table,
		ForwardTimeout: 300 * time.Millisecond, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	d := &door{t: t, srv: srv, table: table, http: httptest.NewServer(srv.Handler())}
	t.Cleanup(d.http.Close)
	start := time.Now()
	if code := d.postSigned(waText("123456789012345", "wamid.SLOW")); code != http.StatusServiceUnavailable {
		t.Fatalf("slow worker: %d, want 503", code)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("answered after %s; the forward timeout is 300ms", took)
	}
	if v := counter(t, srv.m.forwards.WithLabelValues(ForwardFailed)); v != 1 {
		t.Errorf("failed forwards %v, want 1", v)
	}
}
