package deletionrequest_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
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
	return fileRequestWith(g, ns, name, "", ttl)
}

func fileRequestOn(g Gomega, ns, name, channel string) *platformv1.DeletionRequest {
	return fileRequestWith(g, ns, name, channel, nil)
}

func fileRequestWith(g Gomega, ns, name, channel string, ttl *int32) *platformv1.DeletionRequest {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-subject", Namespace: ns},
		Type:       platformv1.SubjectSecretType,
		StringData: map[string]string{"id": subjectID},
	}
	g.Expect(k8s.Create(ctx, secret)).To(Succeed())
	dr := &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: platformv1.DeletionRequestSpec{
			Platform:                platformv1.PlatformWhatsApp,
			SubjectSecretRef:        platformv1.SecretKeyRef{Name: secret.Name, Key: "id"},
			Channel:                 channel,
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
		g.Expect(ready.Reason).To(Equal(platformv1.ReasonNotATenantNamespace))
		g.Expect(ready.Message).To(ContainSubstring("not a tenant's namespace"))
	}, timeout, interval).Should(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: "not-a-tenant", Name: "stray-subject"}, &corev1.Secret{}))
	}, timeout, interval).Should(BeTrue(), "the identifier does not outlive a refused request")
}

func TestCompletedRequestLosesItsSubjectAndExpiresAfterItsTTL(t *testing.T) {
	g := NewWithT(t)
	ns := tenantNamespace(t, g, "finished")
	st := seededStore(t, g)
	runWorker(t, ns, workerClient(g, ns), st)
	done := clock.Now().UTC().Truncate(time.Second)
	dr := fileRequest(g, ns, "ticket-2", ptr.To[int32](int32((2 * day).Seconds())))

	g.Eventually(func(g Gomega) {
		got := get(g, dr)
		g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionCompleted))
		g.Expect(got.Status.CompletedAt.Time).To(BeTemporally("==", done))
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

// A request must not be a way to make the operator delete, or the worker
// read, a Secret that is not a subject Secret: the subject key, a channel's
// app secret, the PostgreSQL credentials, the Ingress TLS Secret, or any
// Secret of another type. Such requests are refused with a reason that names
// the Secret, never its content, and the Secrets stay as they were.
func TestRequestNamingAPlatformSecretIsRefusedAndTheSecretKept(t *testing.T) {
	g := NewWithT(t)
	ns := tenantNamespace(t, g, "guarded")
	const secretValue = "s3cret-value-never-echoed"
	for name, typ := range map[string]corev1.SecretType{
		"meta-app": corev1.SecretTypeOpaque, platformv1.PostgresSecretName: corev1.SecretTypeOpaque,
		tlsSecret: corev1.SecretTypeTLS, "notes": corev1.SecretTypeOpaque,
	} {
		data := map[string]string{"appSecret": secretValue, "verifyToken": "t0ken", "id": secretValue, "dsn": secretValue}
		if typ == corev1.SecretTypeTLS {
			data = map[string]string{corev1.TLSCertKey: "cert", corev1.TLSPrivateKeyKey: secretValue}
		}
		g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Type: typ, StringData: data})).To(Succeed())
	}
	g.Expect(k8s.Create(ctx, testenv.WhatsAppChannel(ns, "wa", "7001", "meta-app"))).To(Succeed())
	g.Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: platformv1.SubjectKeySecretName}, &corev1.Secret{})
	}, timeout, interval).Should(Succeed())

	for _, tc := range []struct{ request, secret, key, reason, says string }{
		{"steal-app-secret", "meta-app", "appSecret", platformv1.ReasonSubjectSecretInUse, "credentials of MetaChannel wa"},
		{"steal-key", platformv1.SubjectKeySecretName, platformv1.SubjectKeySecretKey, platformv1.ReasonSubjectSecretInUse, "subject key"},
		{"steal-dsn", platformv1.PostgresSecretName, "dsn", platformv1.ReasonSubjectSecretInUse, "PostgreSQL credentials"},
		{"steal-tls", tlsSecret, corev1.TLSPrivateKeyKey, platformv1.ReasonSubjectSecretInUse, "TLS certificate"},
		{"opaque", "notes", "id", platformv1.ReasonNotASubjectSecret, "has type Opaque; a subject Secret must have type " + platformv1.SubjectSecretType},
	} {
		var before corev1.Secret
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: tc.secret}, &before)).To(Succeed())
		dr := &platformv1.DeletionRequest{
			ObjectMeta: metav1.ObjectMeta{Name: tc.request, Namespace: ns},
			Spec: platformv1.DeletionRequestSpec{
				Platform:         platformv1.PlatformWhatsApp,
				SubjectSecretRef: platformv1.SecretKeyRef{Name: tc.secret, Key: tc.key},
			},
		}
		g.Expect(k8s.Create(ctx, dr)).To(Succeed())
		g.Eventually(func(g Gomega) {
			got := get(g, dr)
			g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionRefused))
			ready := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady)
			g.Expect(ready.Reason).To(Equal(tc.reason))
			g.Expect(ready.Message).To(ContainSubstring(tc.says))
			g.Expect(ready.Message).To(ContainSubstring("Secret " + tc.secret))
		}, timeout, interval).Should(Succeed(), tc.request)
		g.Consistently(func(g Gomega) {
			var now corev1.Secret
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&before), &now)).To(Succeed(), "%s deleted through a deletion request", tc.secret)
			g.Expect(now.ResourceVersion).To(Equal(before.ResourceVersion))
		}, time.Second, interval).Should(Succeed())
		for _, e := range eventsAbout(g, dr) {
			g.Expect(e.Note).NotTo(ContainSubstring(secretValue))
		}
		g.Expect(meta.FindStatusCondition(get(g, dr).Status.Conditions, platformv1.ConditionReady).Message).NotTo(ContainSubstring(secretValue))
	}
	var role rbacv1.Role
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &role)).To(Succeed())
	for _, rule := range role.Rules {
		g.Expect(rule.ResourceNames).NotTo(ContainElements(platformv1.PostgresSecretName, tlsSecret, "notes"))
	}
}

// A request may be filed before its Secret (Meta's callback does; so may a
// manifest): it waits, is accepted once the Secret is there, and is refused
// if it never comes.
func TestRequestWaitsForItsSubjectSecretThenIsRefused(t *testing.T) {
	g := NewWithT(t)
	ns := tenantNamespace(t, g, "patient")
	early := &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "early", Namespace: ns},
		Spec: platformv1.DeletionRequestSpec{
			Platform: platformv1.PlatformWhatsApp, SubjectSecretRef: platformv1.SecretKeyRef{Name: "early-subject", Key: "id"},
		},
	}
	never := early.DeepCopy()
	never.Name, never.Spec.SubjectSecretRef.Name = "never", "never-subject"
	g.Expect(k8s.Create(ctx, early)).To(Succeed())
	g.Expect(k8s.Create(ctx, never)).To(Succeed())
	for _, dr := range []*platformv1.DeletionRequest{early, never} {
		g.Eventually(func(g Gomega) {
			got := get(g, dr)
			g.Expect(got.Status.Phase).To(BeEmpty())
			g.Expect(meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady)).To(HaveField("Reason", platformv1.ReasonSubjectSecretMissing))
		}, timeout, interval).Should(Succeed())
	}
	g.Expect(k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "early-subject", Namespace: ns},
		Type:       platformv1.SubjectSecretType, StringData: map[string]string{"id": subjectID},
	})).To(Succeed())
	g.Eventually(func() platformv1.DeletionPhase { return get(g, early).Status.Phase }, timeout, interval).Should(Equal(platformv1.DeletionPending))

	received := get(g, never).Status.ReceivedAt.Time
	clock.SetTime(received.Add(platformv1.SubjectSecretGrace + time.Second))
	poke(g, never)
	g.Eventually(func(g Gomega) {
		got := get(g, never)
		g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionRefused))
		ready := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady)
		g.Expect(ready.Reason).To(Equal(platformv1.ReasonSubjectSecretMissing))
		g.Expect(ready.Message).To(ContainSubstring("refused: the subject Secret never-subject does not exist"))
	}, timeout, interval).Should(Succeed())
}

// spec.channel must be a MetaChannel of the tenant, of the request's platform:
// otherwise the request would complete with zero counts, which reads as
// "nothing was stored about this person".
func TestRequestForAnUnknownChannelIsRefused(t *testing.T) {
	g := NewWithT(t)
	ns := tenantNamespace(t, g, "channelled")
	g.Expect(k8s.Create(ctx, &platformv1.MetaChannel{
		ObjectMeta: metav1.ObjectMeta{Name: "page", Namespace: ns},
		Spec: platformv1.MetaChannelSpec{
			Platform:       platformv1.PlatformMessenger,
			Messenger:      &platformv1.MessengerChannel{PageID: "7201"},
			AppSecretRef:   &platformv1.SecretKeyRef{Name: "meta-app", Key: "appSecret"},
			VerifyTokenRef: &platformv1.SecretKeyRef{Name: "meta-app", Key: "verifyToken"},
		},
	})).To(Succeed())
	before := outcomes(g, "refused")
	for name, channel := range map[string]string{"typo": "wa2", "other-platform": "page"} {
		dr := fileRequestOn(g, ns, name, channel)
		g.Eventually(func(g Gomega) {
			got := get(g, dr)
			g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionRefused))
			g.Expect(got.Status.Erased).To(BeNil())
			ready := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady)
			g.Expect(ready.Reason).To(Equal(platformv1.ReasonUnknownChannel))
			g.Expect(ready.Message).To(ContainSubstring("spec.channel " + channel))
		}, timeout, interval).Should(Succeed(), name)
		poke(g, dr)
	}
	g.Eventually(func() float64 { return outcomes(g, "refused") }, timeout, interval).Should(Equal(before + 2))
	g.Consistently(func() float64 { return outcomes(g, "refused") }, time.Second, interval).Should(Equal(before+2),
		"each refusal is counted once")
}
