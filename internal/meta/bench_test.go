package meta

import (
	"fmt"
	"strings"
	"testing"
)

func benchBody(n int) []byte {
	var msgs []string
	for i := range n {
		msgs = append(msgs, fmt.Sprintf(`{"from":"447700001234","id":"wamid.LOAD123x%d","timestamp":"1781100000","type":"text","text":{"body":"Hello, is my order 123 shipped yet? Message %d of a benchmark batch."}}`, i, i))
	}
	return []byte(`{"object":"whatsapp_business_account","entry":[{"id":"109876543210987","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001234","phone_number_id":"123456789012345"},"contacts":[{"profile":{"name":"Customer 1234"},"wa_id":"447700001234"}],"messages":[` +
		strings.Join(msgs, ",") + `]},"field":"messages"}]}]}`)
}

// BenchmarkParse measures splitting and normalizing a WhatsApp delivery of 1 and 10
// messages, the handler's own CPU cost per delivery.
func BenchmarkParse(b *testing.B) {
	for _, n := range []int{1, 10} {
		body := benchBody(n)
		b.Run(fmt.Sprintf("split/batch%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := Split(body); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("split+parse/batch%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				parts, err := Split(body)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := parts[0].Parse(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
