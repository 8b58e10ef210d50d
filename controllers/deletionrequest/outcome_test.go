package deletionrequest_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// The real worker carries out the request: the subject's data is gone, the
// other person's stays; the status has the worker's counts and report and the
// operator's clock and Ready; the outcome is counted once, also when the
// operator reconciles it again and after it restarts.
func TestTheRealWorkerCompletesARequestAndItIsCountedOnce(t *testing.T) {
	g := NewWithT(t)
	ns := tenantNamespace(t, g, "counted")
	st := seededStore(t, g)
	runWorker(t, ns, workerClient(g, ns), st)
	before := outcomes(g, "completed")
	dr := fileRequest(g, ns, "ticket-5", nil)

	g.Eventually(func(g Gomega) {
		got := get(g, dr)
		g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionCompleted))
		g.Expect(got.Status.Erased).To(Equal(&platformv1.ErasedCounts{Messages: 3, Contacts: 1}))
		g.Expect(got.Status.SubjectRef).To(HavePrefix("hmac-sha256:"))
		g.Expect(got.Status.ConfirmationCode).NotTo(BeEmpty())
		g.Expect(got.Status.ReceivedAt).NotTo(BeNil())
		g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, platformv1.ConditionSubjectErased)).To(BeTrue())
		ready := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(ready.Reason).To(Equal(platformv1.ReasonCompleted))
		g.Expect(ready.Message).To(ContainSubstring("are erased"), "the worker's report is summed up in Ready")
	}, timeout, interval).Should(Succeed())
	g.Eventually(func() float64 { return outcomes(g, "completed") }, timeout, interval).Should(Equal(before + 1))
	g.Expect(stored(g, st, subjectID)).To(BeZero())
	g.Expect(stored(g, st, otherID)).To(Equal(4))
	raw, err := json.Marshal(get(g, dr))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(raw)).NotTo(ContainSubstring(subjectID))

	poke(g, dr)
	restartOperator(t)
	poke(g, dr)
	g.Consistently(func() float64 { return outcomes(g, "completed") }, 2*time.Second, interval).Should(Equal(before+1),
		"a completion is counted once, across passes and operator restarts")
}

// A worker that cannot erase (the subject Secret's value is blank) reports
// Failed; the operator records it in Ready and counts it once.
func TestAFailedErasureIsRecordedAndCountedOnce(t *testing.T) {
	g := NewWithT(t)
	ns := tenantNamespace(t, g, "failing")
	st := seededStore(t, g)
	runWorker(t, ns, workerClient(g, ns), st)
	before := outcomes(g, "failed")
	g.Expect(k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "blank", Namespace: ns},
		Type:       platformv1.SubjectSecretType,
		StringData: map[string]string{"id": "   "},
	})).To(Succeed())
	dr := &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "ticket-6", Namespace: ns},
		Spec: platformv1.DeletionRequestSpec{
			Platform: platformv1.PlatformWhatsApp, SubjectSecretRef: platformv1.SecretKeyRef{Name: "blank", Key: "id"},
		},
	}
	g.Expect(k8s.Create(ctx, dr)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := get(g, dr)
		g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionFailed))
		ready := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Reason).To(Equal(platformv1.ReasonFailed))
		g.Expect(ready.Message).To(ContainSubstring("no value under key id"))
	}, timeout, interval).Should(Succeed())
	g.Eventually(func() float64 { return outcomes(g, "failed") }, timeout, interval).Should(Equal(before + 1))
	poke(g, dr)
	g.Consistently(func() float64 { return outcomes(g, "failed") }, 2*time.Second, interval).Should(Equal(before + 1))
	g.Expect(stored(g, st, subjectID)).To(Equal(4), "nothing erased")
}

// Both sides write the request's status. Here the operator refuses the request
// (a channel now uses its Secret) after the worker read it as Pending and
// before the worker's first status write: a merge patch from the worker's stale
// read would put the request back to Running and erase. With optimistic locks
// the worker's write conflicts, it reads the request again, sees the refusal
// and leaves it alone: no update is lost, nothing is erased.
func TestNoUpdateIsLostWhenTheOperatorWritesBetweenTheWorkersReadAndWrite(t *testing.T) {
	g := NewWithT(t)
	ns := tenantNamespace(t, g, "racing")
	st := seededStore(t, g)
	var (
		once      sync.Once
		mu        sync.Mutex
		conflicts int
		failure   string // the worker's goroutine may not fail the test itself
	)
	inWorker := NewGomega(func(msg string, _ ...int) { mu.Lock(); failure = msg; mu.Unlock() })
	interfere := func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
		once.Do(func() {
			// The operator's write lands between the worker's read and its write.
			inWorker.Expect(k8s.Create(ctx, testenv.WhatsAppChannel(ns, "wa", "7101", "ticket-7-subject"))).To(Succeed())
			inWorker.Eventually(func(g Gomega) platformv1.DeletionPhase {
				return get(g, obj.(*platformv1.DeletionRequest)).Status.Phase
			}, timeout, interval).Should(Equal(platformv1.DeletionRefused))
		})
		err := c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		if apierrors.IsConflict(err) {
			mu.Lock()
			conflicts++
			mu.Unlock()
		}
		return err
	}
	dr := fileRequest(g, ns, "ticket-7", nil)
	g.Eventually(func() platformv1.DeletionPhase { return get(g, dr).Status.Phase }, timeout, interval).Should(Equal(platformv1.DeletionPending))
	runWorker(t, ns, interceptor.NewClient(workerClient(g, ns), interceptor.Funcs{SubResourcePatch: interfere}), st)

	g.Eventually(func() int { mu.Lock(); defer mu.Unlock(); return conflicts }, timeout, interval).Should(BeNumerically(">=", 1))
	mu.Lock()
	g.Expect(failure).To(BeEmpty(), "the operator's write between the worker's read and write")
	mu.Unlock()
	g.Consistently(func(g Gomega) {
		got := get(g, dr)
		g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionRefused))
		g.Expect(meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady).Reason).To(Equal(platformv1.ReasonSubjectSecretInUse))
		g.Expect(got.Status.Erased).To(BeNil())
	}, 2*time.Second, interval).Should(Succeed())
	g.Expect(stored(g, st, subjectID)).To(Equal(4), "nothing erased")
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ticket-7-subject"}, &corev1.Secret{})).To(Succeed(),
		"a Secret a channel uses is never deleted")
}
