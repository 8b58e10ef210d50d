package deletionrequest_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

const (
	timeout  = 30 * time.Second
	interval = 100 * time.Millisecond
	day      = 24 * time.Hour
)

var ctx = context.Background()

// subjectID is a made-up phone number: it must never appear in the
// request's status or Events.
const subjectID = "15550100777"

func tenantNamespace(t *testing.T, g Gomega, name string) string {
	t.Helper()
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: name}}
	g.Expect(k8s.Create(ctx, tn)).To(Succeed())
	ns := tn.NamespaceName()
	g.Eventually(func() error { return k8s.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{}) }, timeout, interval).Should(Succeed())
	return ns
}

func fileRequest(g Gomega, ns, name string, ttl *int32) *platformv1.DeletionRequest {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-subject", Namespace: ns},
		StringData: map[string]string{"id": subjectID},
	}
	g.Expect(k8s.Create(ctx, secret)).To(Succeed())
	dr := &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: platformv1.DeletionRequestSpec{
			Platform:                platformv1.PlatformWhatsApp,
			SubjectSecretRef:        platformv1.SecretKeyRef{Name: secret.Name, Key: "id"},
			TTLSecondsAfterFinished: ttl,
		},
	}
	g.Expect(k8s.Create(ctx, dr)).To(Succeed())
	return dr
}

func get(g Gomega, dr *platformv1.DeletionRequest) *platformv1.DeletionRequest {
	var got platformv1.DeletionRequest
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(dr), &got)).To(Succeed())
	return &got
}

func poke(g Gomega, dr *platformv1.DeletionRequest) {
	got := get(g, dr)
	patch := client.MergeFrom(got.DeepCopy())
	got.Annotations = map[string]string{"example.test/poke": time.Now().Format(time.RFC3339Nano)}
	g.Expect(k8s.Patch(ctx, got, patch)).To(Succeed())
}

func eventsAbout(g Gomega, dr *platformv1.DeletionRequest) []eventsv1.Event {
	var evs eventsv1.EventList
	g.Expect(k8s.List(ctx, &evs, client.InNamespace(dr.Namespace))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range evs.Items {
		if e.Regarding.Kind == "DeletionRequest" && e.Regarding.Name == dr.Name {
			out = append(out, e)
		}
	}
	return out
}

func TestRequestGetsItsClockAndAlarm(t *testing.T) {
	g := NewWithT(t)
	ns := tenantNamespace(t, g, "clocked")
	received := clock.Now().UTC().Truncate(time.Second)
	dr := fileRequest(g, ns, "ticket-1", nil)

	g.Eventually(func(g Gomega) {
		got := get(g, dr)
		g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionPending))
		g.Expect(got.Status.ReceivedAt.Time).To(BeTemporally("==", received))
		g.Expect(got.Status.Deadline.Time).To(BeTemporally("==", received.Add(30*day)))
		g.Expect(meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionAtRisk)).To(HaveField("Status", metav1.ConditionFalse))
	}, timeout, interval).Should(Succeed())

	clock.SetTime(received.Add(27*day - time.Minute))
	poke(g, dr)
	g.Consistently(func(g Gomega) {
		g.Expect(meta.IsStatusConditionTrue(get(g, dr).Status.Conditions, platformv1.ConditionAtRisk)).To(BeFalse())
	}, 2*time.Second, interval).Should(Succeed())

	clock.SetTime(received.Add(27*day + time.Minute))
	poke(g, dr)
	g.Eventually(func(g Gomega) {
		got := get(g, dr)
		g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, platformv1.ConditionAtRisk)).To(BeTrue())
		g.Expect(eventsAbout(g, dr)).To(ContainElement(And(HaveField("Reason", "AtRisk"), HaveField("Type", corev1.EventTypeWarning))))
	}, timeout, interval).Should(Succeed())
	for _, e := range eventsAbout(g, dr) {
		g.Expect(e.Note).NotTo(ContainSubstring(subjectID))
	}
}

func TestRequestOutsideATenantNamespaceIsRefused(t *testing.T) {
	g := NewWithT(t)
	g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "not-a-tenant"}})).To(Succeed())
	dr := fileRequest(g, "not-a-tenant", "stray", nil)
	g.Eventually(func(g Gomega) {
		got := get(g, dr)
		g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionRefused))
		g.Expect(got.Status.CompletedAt).NotTo(BeNil())
		ready := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Reason).To(Equal(platformv1.ReasonRefused))
		g.Expect(ready.Message).To(ContainSubstring("not a tenant's namespace"))
	}, timeout, interval).Should(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: "not-a-tenant", Name: "stray-subject"}, &corev1.Secret{}))
	}, timeout, interval).Should(BeTrue(), "the identifier does not outlive a refused request")
}

func TestCompletedRequestLosesItsSubjectAndExpiresAfterItsTTL(t *testing.T) {
	g := NewWithT(t)
	ns := tenantNamespace(t, g, "finished")
	dr := fileRequest(g, ns, "ticket-2", ptr.To[int32](int32((2 * day).Seconds())))
	g.Eventually(func(g Gomega) { g.Expect(get(g, dr).Status.ReceivedAt).NotTo(BeNil()) }, timeout, interval).Should(Succeed())

	// The worker's part: the erasure is committed and reported.
	done := clock.Now().UTC().Truncate(time.Second)
	got := get(g, dr)
	patch := client.MergeFrom(got.DeepCopy())
	got.Status.Phase = platformv1.DeletionCompleted
	got.Status.CompletedAt = &metav1.Time{Time: done}
	got.Status.Erased = &platformv1.ErasedCounts{Messages: 3, Contacts: 1}
	g.Expect(k8s.Status().Patch(ctx, got, patch)).To(Succeed())

	g.Eventually(func(g Gomega) {
		got := get(g, dr)
		g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, platformv1.ConditionReady)).To(BeTrue())
		g.Expect(meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionAtRisk)).To(BeNil())
		g.Expect(apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ticket-2-subject"}, &corev1.Secret{}))).To(BeTrue())
	}, timeout, interval).Should(Succeed())

	clock.SetTime(done.Add(2*day - time.Minute))
	poke(g, dr)
	g.Consistently(func() error { return k8s.Get(ctx, client.ObjectKeyFromObject(dr), &platformv1.DeletionRequest{}) },
		2*time.Second, interval).Should(Succeed())

	clock.SetTime(done.Add(2*day + time.Minute))
	poke(g, dr)
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(dr), &platformv1.DeletionRequest{}))
	}, timeout, interval).Should(BeTrue())
}

func TestRequestInADeactivatedTenantSaysTheTenantErasureCoversIt(t *testing.T) {
	g := NewWithT(t)
	ns := tenantNamespace(t, g, "leaving")
	dr := fileRequest(g, ns, "ticket-3", nil)
	var tn platformv1.Tenant
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: "leaving"}, &tn)).To(Succeed())
	patch := client.MergeFrom(tn.DeepCopy())
	tn.Spec.State = platformv1.TenantDeactivated
	g.Expect(k8s.Patch(ctx, &tn, patch)).To(Succeed())
	g.Eventually(func(g Gomega) {
		ready := meta.FindStatusCondition(get(g, dr).Status.Conditions, platformv1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Reason).To(Equal(platformv1.ReasonTenantDeactivated))
		g.Expect(ready.Message).To(ContainSubstring("erased with it at"))
	}, timeout, interval).Should(Succeed())
}

// A request must not be a way to make the operator delete the platform's own
// Secrets (the subject key, a channel's app secret): such requests are
// refused and the Secrets stay.
func TestRequestNamingAPlatformSecretIsRefusedAndTheSecretKept(t *testing.T) {
	g := NewWithT(t)
	ns := tenantNamespace(t, g, "guarded")
	g.Expect(k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "meta-app", Namespace: ns},
		StringData: map[string]string{"appSecret": "s3cret", "verifyToken": "t0ken"},
	})).To(Succeed())
	g.Expect(k8s.Create(ctx, &platformv1.MetaChannel{
		ObjectMeta: metav1.ObjectMeta{Name: "wa", Namespace: ns},
		Spec: platformv1.MetaChannelSpec{
			Platform:       platformv1.PlatformWhatsApp,
			WhatsApp:       &platformv1.WhatsAppChannel{PhoneNumberID: "7001", BusinessAccountID: "7002"},
			AppSecretRef:   platformv1.SecretKeyRef{Name: "meta-app", Key: "appSecret"},
			VerifyTokenRef: platformv1.SecretKeyRef{Name: "meta-app", Key: "verifyToken"},
		},
	})).To(Succeed())
	g.Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "omniflow-subject-key"}, &corev1.Secret{})
	}, timeout, interval).Should(Succeed())

	for name, secret := range map[string]string{"steal-app-secret": "meta-app", "steal-key": "omniflow-subject-key"} {
		dr := &platformv1.DeletionRequest{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: platformv1.DeletionRequestSpec{
				Platform:         platformv1.PlatformWhatsApp,
				SubjectSecretRef: platformv1.SecretKeyRef{Name: secret, Key: "appSecret"},
			},
		}
		g.Expect(k8s.Create(ctx, dr)).To(Succeed())
		g.Eventually(func(g Gomega) {
			got := get(g, dr)
			g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionRefused))
			g.Expect(meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady).Message).To(ContainSubstring("the platform itself uses"))
		}, timeout, interval).Should(Succeed(), name)
		g.Consistently(func() error {
			return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: secret}, &corev1.Secret{})
		}, time.Second, interval).Should(Succeed(), "%s deleted through a deletion request", secret)
	}
}
