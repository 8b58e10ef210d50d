package deletionrequest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// otherID is a second end-user of the tenant, whose data must stay.
const otherID = "15550100888"

// workerClient acts as the tenant's worker ServiceAccount: it can do exactly
// what the Role the operator applied grants.
func workerClient(g Gomega, ns string) client.WithWatch {
	c, err := client.NewWithWatch(workerConfig(ns), client.Options{Scheme: scheme})
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return c
}

func workerConfig(ns string) *rest.Config {
	cfg := rest.CopyConfig(restCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + controllers.WorkerName}
	return cfg
}

// seededStore is the tenant's SQLite store with three messages and a contact
// of the subject and of another person, on channel "wa".
func seededStore(t *testing.T, g Gomega) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = st.Close() })
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	var b meta.Batch
	for i, who := range []string{subjectID, otherID} {
		b.Contacts = append(b.Contacts, meta.Contact{Platform: meta.WhatsApp, Channel: "wa", Subject: who, WaID: who})
		for j := range 3 {
			id := fmt.Sprintf("wamid.%d.%d", i, j)
			b.Messages = append(b.Messages, meta.Message{
				Platform: meta.WhatsApp, Channel: "wa", ID: id, Subject: who, Direction: meta.Inbound,
				Type: "text", Text: "hello", Timestamp: at.Add(time.Duration(j) * time.Minute), Raw: []byte(`{"id":"` + id + `"}`),
			})
		}
	}
	_, err = st.Commit(context.Background(), &b)
	g.Expect(err).NotTo(HaveOccurred())
	return st
}

// stored counts the records the store holds of one person.
func stored(g Gomega, st store.Store, who string) int {
	n := 0
	g.ExpectWithOffset(1, st.Export(context.Background(), store.Filter{Subject: &store.Subject{Platform: meta.WhatsApp, ID: who}},
		func(store.Record) error { n++; return nil })).To(Succeed())
	return n
}

// runWorker runs the worker's real request processing, as `ingest-worker
// serve` wires it, until the test ends.
func runWorker(t *testing.T, ns string, c client.Client, st store.Store) {
	t.Helper()
	p := &subjecterasure.Processor{
		Client: c, RestConfig: workerConfig(ns), Namespace: ns, Store: st, Clock: clock, Log: logr.Discard(),
	}
	testenv.Background(t, p.Run)
}

// outcomes reads omniflow_deletion_requests_total{result} from the operator's
// metrics registry.
func outcomes(g Gomega, result string) float64 {
	v, _, err := testenv.MetricValue("omniflow_deletion_requests_total", "result", result)
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return v
}
