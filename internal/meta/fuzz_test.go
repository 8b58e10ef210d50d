package meta

import (
	"encoding/json"
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
}

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
			for _, m := range b.Messages {
				if m.ID == "" || m.Subject == "" {
					t.Fatalf("message without id/subject: %+v", m)
				}
				if !m.Timestamp.IsZero() && m.Timestamp.Location() != time.UTC {
					t.Fatalf("non-UTC timestamp %v", m.Timestamp)
				}
				if m.Raw != nil && !json.Valid(m.Raw) {
					t.Fatalf("invalid raw fragment %q", m.Raw)
				}
			}
			for _, s := range b.Statuses {
				if s.MessageID == "" || StateRank(s.State) == 0 {
					t.Fatalf("bad status %+v", s)
				}
			}
			for _, k := range p.Ignored {
				if len(k) > 64 || strings.ContainsAny(k, " \"{}\n") {
					t.Fatalf("unsafe metric label %q", k)
				}
			}
		}
	})
}

// FuzzVerifySignature: never panics, and never accepts a header other than the signature of
// the body or of its escaped-unicode form.
func FuzzVerifySignature(f *testing.F) {
	for file, header := range readmeVectors(f) {
		body := readFixture(f, file)
		f.Add([]byte(testSecret), body, header)
	}
	f.Add([]byte("k"), []byte("caf\xc3\xa9 \xff"), "sha256=00")
	f.Add([]byte(""), []byte("{}"), "")
	f.Fuzz(func(t *testing.T, secret, body []byte, header string) {
		fb, err := VerifySignature(secret, body, header)
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
