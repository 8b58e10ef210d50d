package frontdoor

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// BenchmarkDelivery is the front door's own cost for a one-tenant delivery over real
// HTTP, with a worker that answers at once.
func BenchmarkDelivery(b *testing.B) {
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer worker.Close()
	table := &Table{}
	if err := table.Replace([]Tenant{{Name: "bench", Worker: worker.URL, Channels: []RouteChannel{
		{Platform: meta.WhatsApp, WhatsApp: &channels.WhatsAppIDs{PhoneNumberID: "123456789012345", BusinessAccountID: "109876543210987"}}}}}); err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(Config{AppSecret: []byte(appSecret), VerifyToken: verifyToken, ForwardingKey: forwardingKey, Table: table, Log: logr.Discard()})
	if err != nil {
		b.Fatal(err)
	}
	door := httptest.NewServer(srv.Handler())
	defer door.Close()
	body := waText("123456789012345", "wamid.BENCH")
	sig := meta.Sign([]byte(appSecret), body)
	client := &http.Client{}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		req, _ := http.NewRequest(http.MethodPost, door.URL+"/webhooks/meta", bytes.NewReader(body))
		req.Header.Set(meta.SignatureHeader, sig)
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("%v %v", resp, err)
		}
		resp.Body.Close()
	}
}

// BenchmarkDeliveryHandler is the front door's handler for a one-tenant delivery
// without the server side's socket: what it costs beyond Meta's HTTP exchange (the
// forward's exchange with a worker that answers at once is in).
func BenchmarkDeliveryHandler(b *testing.B) {
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer worker.Close()
	table := &Table{}
	if err := table.Replace([]Tenant{{Name: "bench", Worker: worker.URL, Channels: []RouteChannel{
		{Platform: meta.WhatsApp, WhatsApp: &channels.WhatsAppIDs{PhoneNumberID: "123456789012345", BusinessAccountID: "109876543210987"}}}}}); err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(Config{AppSecret: []byte(appSecret), VerifyToken: verifyToken, ForwardingKey: forwardingKey, Table: table, Log: logr.Discard()})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	body := waText("123456789012345", "wamid.BENCH")
	sig := meta.Sign([]byte(appSecret), body)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/meta", bytes.NewReader(body))
		req.Header.Set(meta.SignatureHeader, sig)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
