package meta

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func addFixtureSeeds(f *testing.F) {
	for _, dir := range []string{"fixtures", "extra"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(`{"object":"page","entry":[{"id":1,"messaging":[{"sender":{"id":2},"delivery":{"watermark":"x"}}]}]}`))
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"a","status":"played","timestamp":1e3}]}}]}]}`))
	// An empty mid once became a status the store refuses, failing the whole delivery.
	f.Add([]byte(`{"object":"page","entry":[{"id":"1","messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1781100300600,"delivery":{"mids":[""],"watermark":1781100300512}},{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1781100300700,"message":{"mid":"m_1","text":"hi"}}]}]}`))
	f.Add([]byte(`{"object":"instagram","entry":[{"id":"1","messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},"delivery":{"mids":["","m_2"]}}]}]}`))
	// One malformed message once lost its valid siblings with it.
	// Identity changes: a username user (no phone number on either side), one without
	// any new identifier, and a system message of another type.
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"from_user_id":"US.1","id":"s1","timestamp":"1781100000","type":"system","system":{"user_id":"US.2","type":"user_changed_user_id"}},{"from":"3","id":"s2","type":"system","system":{"body":"x","type":"user_changed_number"}},{"from":"3","id":"s3","type":"system","system":{"type":"user_identity_changed"}}]}}]}]}`))
	// Leads and the events stored since: a reaction without mid, an opt-in known only by
	// its user_ref, a referral with a numeric ad id and no sender, an order with odd
	// numbers, a voice without its object, a comment without author, an unknown type.
	f.Add([]byte(`{"object":"page","entry":[{"id":"1","messaging":[{"sender":{"id":"2"},"timestamp":1,"reaction":{"action":"unreact"}},{"sender":{},"optin":{"user_ref":"u","one_time_notif_token":"t"}},{"sender":{},"referral":{"ad_id":123,"source":"ADS"}},{"sender":{"user_ref":"g"},"referral":{"source":"CUSTOMER_CHAT_PLUGIN","ads_context_data":{"post_id":5}}}]}]}`))
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"from":"3","id":"o1","type":"order","order":{"product_items":[{"quantity":"x"}]}},{"from":"3","id":"o2","type":"order","order":{"product_items":[{"quantity":1e300,"item_price":"1.5"}]}},{"from":"3","id":"v1","type":"voice"},{"from":"3","id":"u1","type":"brand_new","group_id":"g","referral":{"source_id":7,"welcome_message":{"text":"hi"}}}]}}]}]}`))
	f.Add([]byte(`{"object":"instagram","entry":[{"id":"1","time":1,"changes":[{"field":"comments","value":{"id":"c1","text":"x"}},{"field":"live_comments","value":{"from":{"id":"1"},"id":"c2"}},{"field":"comments","value":{"from":{"id":"9","username":"u"},"comment_id":"c3","parent_id":"c1"}}]}]}`))
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2"},"contacts":[{"wa_id":"3"},{}],"messages":[{"from":"3","id":"w1","timestamp":"soon","type":"text","text":{"body":"x"}},{"from":"3","id":"w2","timestamp":"1781100000","type":"text","text":{"body":"y"}}],"statuses":[{"id":"s","status":"read","timestamp":"later"},{"status":"sent"}]}}]}]}`))
}

// storable mirrors store.Validate (which this package cannot import): every record the
// parser yields must be one the store accepts, or a whole delivery fails on every retry.
func storable(b *Batch) error {
	for _, m := range b.Messages {
		if m.ID == "" || m.Subject == "" || m.Platform == "" {
			return fmt.Errorf("message without platform, id or subject: %+v", m)
		}
	}
	for _, s := range b.Statuses {
		if s.MessageID == "" || StateRank(s.State) == 0 {
			return fmt.Errorf("bad status %+v", s)
		}
	}
	for _, c := range b.Contacts {
		if c.Subject == "" || c.Platform == "" {
			return fmt.Errorf("contact without platform or subject: %+v", c)
		}
	}
	for _, f := range b.Files {
		if f.MessageID == "" {
			return fmt.Errorf("file without message id: %+v", f)
		}
	}
	for _, d := range b.Deletions {
		if d.MessageID == "" {
			return fmt.Errorf("deletion without message id: %+v", d)
		}
	}
	for _, r := range b.Receipts {
		if r.Subject == "" {
			return fmt.Errorf("receipt without subject: %+v", r)
		}
	}
	for _, l := range b.Leads {
		if l.Platform == "" || l.ID == "" || l.Subject == "" {
			return fmt.Errorf("lead without platform, id or subject: %+v", l)
		}
		if l.HasToken != (l.Token != "") {
			return fmt.Errorf("lead says hasToken %v with a token of %d bytes", l.HasToken, len(l.Token))
		}
	}
	for _, c := range b.Identities {
		if c.Platform == "" || c.MessageID == "" || c.OldWaID+c.OldUserID == "" || c.NewWaID+c.NewUserID == "" {
			return fmt.Errorf("identity change without platform, message id, old or new identifier: %+v", c)
		}
	}
	return nil
}

func safeLabel(k string) bool { return len(k) <= 64 && !strings.ContainsAny(k, " \"{}\n") }

// FuzzParseDelivery: the parser never panics, and whatever it accepts obeys the model's
// invariants (ids present, UTC times, valid raw JSON, known states).
func FuzzParseDelivery(f *testing.F) {
	addFixtureSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		parts, err := Split(body)
		if err != nil {
			return
		}
		for i := range parts {
			p, err := parts[i].Parse()
			if err != nil {
				continue
			}
			if _, err := parts[i].Envelope(); err != nil {
				t.Fatalf("Envelope of an accepted part: %v", err)
			}
			b := p.Batch
			if err := storable(&b); err != nil {
				t.Fatalf("the store would refuse a parsed record: %v", err)
			}
			for _, m := range b.Messages {
				if !m.Timestamp.IsZero() && m.Timestamp.Location() != time.UTC {
					t.Fatalf("non-UTC timestamp %v", m.Timestamp)
				}
				if m.Raw != nil && !json.Valid(m.Raw) {
					t.Fatalf("invalid raw fragment %q", m.Raw)
				}
			}
			for _, k := range p.Ignored {
				if !safeLabel(k) {
					t.Fatalf("unsafe metric label %q", k)
				}
			}
			for _, inv := range p.Invalid {
				if !safeLabel(inv.Kind) || inv.Err == nil {
					t.Fatalf("invalid item with unsafe label %q or no reason", inv.Kind)
				}
			}
		}
	})
}

// FuzzVerifySignature: never panics, never accepts a header other than the signature of
// the body or of its escaped-unicode form, and a Verifier answers alike.
func FuzzVerifySignature(f *testing.F) {
	for file, header := range readmeVectors(f) {
		body := readFixture(f, file)
		f.Add([]byte(testSecret), body, header)
	}
	f.Add([]byte("k"), []byte("caf\xc3\xa9 \xff"), "sha256=00")
	f.Add([]byte(""), []byte("{}"), "")
	f.Fuzz(func(t *testing.T, secret, body []byte, header string) {
		fb, err := VerifySignature(secret, body, header)
		if vfb, verr := NewVerifier(secret).Verify(body, header); vfb != fb || !errors.Is(verr, err) {
			t.Fatalf("Verifier: %v %v, VerifySignature: %v %v", vfb, verr, fb, err)
		}
		if err != nil {
			return
		}
		want := Sign(secret, body)
		if fb {
			want = Sign(secret, EscapeNonASCII(body))
		}
		if !strings.EqualFold(header, want) {
			t.Fatalf("accepted header %q for body; want %q (fallback %v)", header, want, fb)
		}
	})
}
