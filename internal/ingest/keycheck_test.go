package ingest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// The canary on both backends: a store sealed under the worker's key passes (also when
// it holds more records than the canary reads: the export is cut short), the same store
// under another tenant's key, or without a key, is refused with the reason.
func TestCheckKeyRefusesAStoreSealedUnderAnotherKey(t *testing.T) {
	if err := pgtest.CheckServer(); err != nil {
		t.Fatal(err)
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			dir, dsn := t.TempDir(), ""
			if backend == "postgres" {
				dsn = pgtest.FreshDatabase(t)
			}
			keys := storetest.NewKeys(t)
			open := func(k *store.Keys) store.Store {
				st, err := OpenStore(context.Background(), dir, dsn, false, nil, k)
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
			st := open(keys)
			var b meta.Batch
			for i := range 2 * canaryRecords {
				b.Messages = append(b.Messages, meta.Message{Platform: meta.WhatsApp, Channel: "wa", ID: fmt.Sprintf("wamid.c%d", i),
					Subject: "15555550142", Direction: meta.Inbound, Type: "text", Text: "hello", Timestamp: time.Unix(1781100000, 0).UTC()})
			}
			if _, err := st.Commit(context.Background(), &b); err != nil {
				t.Fatal(err)
			}
			if err := CheckKey(context.Background(), st); err != nil {
				t.Errorf("the store's own key: %v", err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name string
				keys *store.Keys
				want string
			}{
				{"another tenant's key", storetest.NewKeys(t), "do not open under this worker's data key"},
				{"no key", nil, "this worker has no key to open them"},
			} {
				st := open(c.keys)
				err := CheckKey(context.Background(), st)
				if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "hello") {
					t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
				}
				_ = st.Close()
			}
		})
	}
}
