package postgres

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// BenchmarkCommit measures the durable commit path alone (no HTTP) with concurrent
// callers, in clear and encrypted side by side, on the server of
// OMNIFLOW_TEST_POSTGRES_DSN: go test -run - -bench Commit ./internal/store/postgres
func BenchmarkCommit(b *testing.B) {
	for _, enc := range []struct {
		name string
		keys func(testing.TB) *store.Keys
	}{{"clear", func(testing.TB) *store.Keys { return nil }}, {"encrypted", storetest.NewKeys}} {
		for _, batch := range []int{1, 10} {
			b.Run(fmt.Sprintf("%s/batch%d", enc.name, batch), func(b *testing.B) {
				s := openDSN(b, pgtest.FreshDatabase(b), Options{Keys: enc.keys(b)})
				defer s.Close()
				var seq atomic.Int64
				b.SetParallelism(8)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						id := seq.Add(1)
						user := fmt.Sprint(15550000000 + id%1000)
						bt := meta.Batch{Contacts: []meta.Contact{{Platform: meta.WhatsApp, Channel: "c", Subject: user, WaID: user, Name: "Load"}}}
						for i := range batch {
							m := wamsg(fmt.Sprintf("wamid.%d.%d", id, i), user)
							m.Text, m.Timestamp = "Hello, is my order shipped yet?", time.Now().UTC()
							m.Raw = []byte(`{"from":"` + user + `","id":"x","timestamp":"1781100000","type":"text","text":{"body":"Hello"}}`)
							bt.Messages = append(bt.Messages, m)
						}
						if _, err := s.Commit(context.Background(), &bt); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
