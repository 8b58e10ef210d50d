package ingest

import (
	"bytes"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// BenchmarkDelivery drives the real handler over real HTTP with a real store, to profile
// where a durable delivery's CPU goes: go test -bench Delivery -cpuprofile cpu.out
func BenchmarkDelivery(b *testing.B) {
	for _, batch := range []int{1, 10} {
		b.Run(fmt.Sprintf("batch%d", batch), func(b *testing.B) {
			e := newEnv(b, Options{})
			defer e.http.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			var seq atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := seq.Add(1)
					var ids []string
					for i := range batch {
						ids = append(ids, fmt.Sprintf("wamid.B%dx%d", id, i))
					}
					body := waDelivery("123456789012345", ids...)
					req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/webhooks/meta/wa", bytes.NewReader(body))
					req.Header.Set(meta.SignatureHeader, meta.Sign([]byte(secret), body))
					resp, err := client.Do(req)
					if err != nil || resp.StatusCode != 200 {
						b.Errorf("POST: %v %v", err, resp)
						return
					}
					resp.Body.Close()
				}
			})
		})
	}
}
