package security_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

// The worker reports its shared files under the key media of its report ConfigMap,
// and the shipped policy lets it: but only that key beside retention, and only a
// report-sized value. A worker that tried to park data there (another key, a value of
// megabytes) is refused, and the report already written stays as it was.
func TestWorkerWritesItsMediaReportAndNothingElseInTheReport(t *testing.T) {
	g := NewWithT(t)
	ns := tenant(t, g, "sec-media-report")
	w := worker(g, ns)
	key := types.NamespacedName{Namespace: ns, Name: platformv1.WorkerReportName}
	patch := func(data map[string]any) error {
		body, err := json.Marshal(map[string]any{"data": data})
		g.Expect(err).NotTo(HaveOccurred())
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: key.Name}}
		return w.Patch(ctx, cm, client.RawPatch(types.MergePatchType, body))
	}

	// A report as the fetcher writes it: counts, times, channel names.
	at := metav1.NewTime(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	doc, err := json.Marshal(workerreport.Media{
		ReportedAt: at, Pending: 3, OldestPendingAt: &at, Fetched: 10, Blobs: 9, Bytes: 123456,
		Channels: map[string]workerreport.MediaChannel{"wa-sales": {TokenRefusedAt: &at}, "wa-support": {NoToken: true}},
	})
	g.Expect(err).NotTo(HaveOccurred())
	// The Role's grant reaches the API server's authorizer within moments.
	g.Eventually(func() error { return patch(map[string]any{platformv1.WorkerReportMediaKey: string(doc)}) }, timeout, interval).Should(Succeed())

	refused := func(err error, what string) {
		denied(g, err, what)
		g.ExpectWithOffset(1, err.Error()).To(ContainSubstring("may only write the keys retention (at most 4096 bytes), media (at most 16384 bytes) and encryption (at most 1024 bytes)"), what)
	}
	refused(patch(map[string]any{"files": "x"}), "write another key")
	refused(patch(map[string]any{platformv1.WorkerReportMediaKey: string(doc), "media2": string(doc)}), "write another key beside media")
	refused(patch(map[string]any{platformv1.WorkerReportMediaKey: strings.Repeat("x", 16385)}), "write a media report over 16 KiB")
	refused(patch(map[string]any{platformv1.WorkerReportRetentionKey: strings.Repeat("x", 4097)}), "write a retention report over 4 KiB")
	// At the bound, a report is still accepted: the limit is not off by one.
	g.Expect(patch(map[string]any{platformv1.WorkerReportMediaKey: strings.Repeat("x", 16384)})).To(Succeed())
	g.Expect(patch(map[string]any{platformv1.WorkerReportMediaKey: string(doc)})).To(Succeed())

	// The encryption report: two key versions and a flag, 1 KiB at most.
	enc, err := json.Marshal(workerreport.Encryption{ReportedAt: at, ActiveVersion: 2, SealedVersion: 1})
	g.Expect(err).NotTo(HaveOccurred())
	refused(patch(map[string]any{platformv1.WorkerReportEncryptionKey: strings.Repeat("x", 1025)}), "write an encryption report over 1 KiB")
	g.Expect(patch(map[string]any{platformv1.WorkerReportEncryptionKey: string(enc)})).To(Succeed())

	var cm corev1.ConfigMap
	g.Expect(admin.Get(ctx, key, &cm)).To(Succeed())
	g.Expect(cm.Data).To(Equal(map[string]string{platformv1.WorkerReportMediaKey: string(doc), platformv1.WorkerReportEncryptionKey: string(enc)}))
}
