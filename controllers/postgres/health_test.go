package postgres_test

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/healthtable"
)

// A PostgreSQL tenant whose server is down is in progress (the operator
// retries); one the operator cannot serve at all (no --postgres-admin-secret)
// is Failed, for the real kstatus library (the rows of internal/healthtable
// that need PostgreSQL).
func TestKstatusOfPostgresOutagesAndRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		admin  types.NamespacedName
		reason string
	}{
		{"pg-health-down-", downSecret, platformv1.ReasonDatabaseUnavailable},
		{"pg-health-noflag-", types.NamespacedName{}, platformv1.ReasonStorageUnsupported},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			g := NewWithT(t)
			stop := startOperator(t, tc.admin)
			defer stop()
			tn := newTenant(tc.name+runID, 0)
			g.Expect(k8s.Create(ctx, tn)).To(Succeed())
			g.Eventually(func(g Gomega) {
				got := tenant(g, tn.Name)
				g.Expect(healthtable.KeyOf(got)).To(ContainSubstring("/" + tc.reason + "/"))
				g.Expect(healthtable.Check(got)).To(Succeed())
			}, timeout, interval).Should(Succeed())
			// Gone before another test's operator could reach the real server
			// for it: no database of this tenant is ever created.
			g.Expect(k8s.Delete(ctx, tn)).To(Succeed())
			got := tenant(g, tn.Name)
			patch := client.MergeFrom(got.DeepCopy())
			got.Finalizers = nil
			g.Expect(k8s.Patch(ctx, got, patch)).To(Succeed())
			// Its namespace would be an orphan for the sweep of the tests that
			// follow, and enough orphans make the sweep stand down: remove it.
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tn.NamespaceName()}}
			g.Expect(client.IgnoreNotFound(k8s.Delete(ctx, ns))).To(Succeed())
			g.Eventually(func() bool {
				return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(ns), ns))
			}, timeout, interval).Should(BeTrue())
		})
	}
}
