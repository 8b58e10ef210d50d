package erasure_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

// writeMediaReport plays the worker writing its shared-files report.
func writeMediaReport(g Gomega, ns string, rep workerreport.Media) {
	g.Eventually(func() error { return testenv.ReportMedia(ctx, k8s, ns, rep) }, timeout, interval).Should(Succeed())
}

// The erasure record says how many shared files and bytes went with the store: the
// DeleteStorage step carries the counts of the worker's last report, which may come
// after deactivation (the worker stopping), and is read before DeleteWorker removes
// the report. No other step claims files; status.files goes with the store.
func TestTheStorageStepRecordsTheFilesAndBytesTheWorkerLastReported(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	tn := provisioned(t, g, "erase-files", time.Hour)
	ns := tn.NamespaceName()
	at := metav1.NewTime(clock.Now().UTC().Truncate(time.Second))
	writeMediaReport(g, ns, workerreport.Media{ReportedAt: at, Fetched: 12, Blobs: 11, Bytes: 3 << 20})
	g.Eventually(func(g Gomega) {
		g.Expect(tenant(g, tn.Name).Status.Files).To(HaveField("Fetched", int64(12)))
	}, timeout, interval).Should(Succeed())

	setState(g, tn.Name, platformv1.TenantDeactivated)
	g.Eventually(func(g Gomega) {
		g.Expect(tenant(g, tn.Name).Status.Phase).To(Equal(platformv1.TenantPhaseDeactivated))
	}, timeout, interval).Should(Succeed())
	// The worker's last word as it stops: one more file fetched.
	writeMediaReport(g, ns, workerreport.Media{ReportedAt: metav1.NewTime(at.Add(time.Second)), Fetched: 13, Blobs: 12, Bytes: 3<<20 + 512})
	g.Eventually(func(g Gomega) {
		g.Expect(tenant(g, tn.Name).Status.Files).To(HaveField("Fetched", int64(13)))
	}, timeout, interval).Should(Succeed())

	clock.SetTime(tenant(g, tn.Name).Status.ErasureScheduledAt.Add(time.Second))
	poke(g, tn.Name)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseErased))
		g.Expect(got.Status.Files).To(BeNil(), "nothing is stored any more")
		for _, s := range got.Status.Erasure {
			if s.Name == "DeleteStorage" {
				g.Expect(s.Files).To(HaveValue(Equal(int64(13))))
				g.Expect(s.FileBytes).To(HaveValue(Equal(int64(3<<20 + 512))))
				continue
			}
			g.Expect(s.Files).To(BeNil(), s.Name)
			g.Expect(s.FileBytes).To(BeNil(), s.Name)
		}
	}, timeout, interval).Should(Succeed())
}
