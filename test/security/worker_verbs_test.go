package security_test

import (
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// denied fails unless err is a refusal by RBAC or by the admission policy.
func denied(g Gomega, err error, what string) {
	g.ExpectWithOffset(1, apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "%s: want a denial, got %v", what, err)
}

// The Role grants get, list and watch on MetaChannels and DeletionRequests:
// reading only. Every write is refused and nothing changes.
func TestWorkerReadsChannelsAndRequestsButCannotChangeThem(t *testing.T) {
	g := NewWithT(t)
	ns := tenant(t, g, "sec-read-only")
	w := worker(g, ns)
	mc := testenv.WhatsAppChannel(ns, "wa", "8101", "meta-app")
	g.Expect(admin.Create(ctx, mc)).To(Succeed())
	dr := request(ns, "ticket-10", "ticket-10-subject", "id")
	g.Expect(admin.Create(ctx, dr)).To(Succeed())

	// What it may do.
	g.Expect(w.List(ctx, &platformv1.MetaChannelList{}, client.InNamespace(ns))).To(Succeed())
	g.Expect(w.List(ctx, &platformv1.DeletionRequestList{}, client.InNamespace(ns))).To(Succeed())
	var gotMC platformv1.MetaChannel
	g.Expect(w.Get(ctx, client.ObjectKeyFromObject(mc), &gotMC)).To(Succeed())
	var gotDR platformv1.DeletionRequest
	g.Expect(w.Get(ctx, client.ObjectKeyFromObject(dr), &gotDR)).To(Succeed())
	// Not another tenant's.
	other := tenant(t, g, "sec-read-only-b")
	denied(g, w.List(ctx, &platformv1.MetaChannelList{}, client.InNamespace(other)), "list another tenant's channels")

	// What it may not.
	mcPatch := client.MergeFrom(gotMC.DeepCopy())
	gotMC.Spec.AppSecretRef.Name = tlsSecret
	denied(g, w.Patch(ctx, gotMC.DeepCopy(), mcPatch), "patch a channel")
	denied(g, w.Update(ctx, gotMC.DeepCopy()), "update a channel")
	statusPatch := client.MergeFrom(gotMC.DeepCopy())
	apimeta.SetStatusCondition(&gotMC.Status.Conditions, metav1.Condition{Type: platformv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Forged"})
	denied(g, w.Status().Patch(ctx, gotMC.DeepCopy(), statusPatch), "patch a channel's status")
	denied(g, w.Delete(ctx, mc), "delete a channel")
	denied(g, w.Delete(ctx, dr), "delete a request")
	drPatch := client.MergeFrom(gotDR.DeepCopy())
	gotDR.Labels = map[string]string{"forged": "yes"}
	denied(g, w.Patch(ctx, gotDR.DeepCopy(), drPatch), "patch a request")
	denied(g, w.Status().Update(ctx, gotDR.DeepCopy()), "update a request's status (patch only)")

	var after platformv1.MetaChannel
	g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(mc), &after)).To(Succeed())
	g.Expect(after.Spec).To(Equal(mc.Spec))
	g.Expect(apimeta.FindStatusCondition(after.Status.Conditions, platformv1.ConditionReady)).NotTo(HaveField("Reason", "Forged"))
	var afterDR platformv1.DeletionRequest
	g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(dr), &afterDR)).To(Succeed())
	g.Expect(afterDR.Labels).NotTo(HaveKey("forged"))
}

// The worker may patch a request's status (it reports erasures there); the
// shipped policy holds it to its own fields. It cannot undo a refusal (for a
// request that names the TLS Secret), accept a request the operator has not
// accepted, or write the operator's conditions and clock. Even a status that
// said otherwise would gain it nothing: the Role and the clean-up look at the
// Secret itself.
func TestWorkerCannotForgeARequestsStatus(t *testing.T) {
	g := NewWithT(t)
	ns := tenant(t, g, "sec-forge")
	ed := editor(t, g, ns)
	w := worker(g, ns)
	tls := tlsSecretIn(g, ns, tlsSecret)
	steal := request(ns, "forge-tls", tlsSecret, corev1.TLSPrivateKeyKey)
	g.Expect(ed.Create(ctx, steal)).To(Succeed())
	refused(g, steal, platformv1.ReasonSubjectSecretInUse, tlsKey)
	early := request(ns, "forge-early", "not-yet", "id") // waits for its Secret: no phase
	g.Expect(ed.Create(ctx, early)).To(Succeed())
	fair := request(ns, "forge-fair", "forge-fair-subject", "id")
	g.Expect(ed.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "forge-fair-subject", Namespace: ns},
		Type:       platformv1.SubjectSecretType, StringData: map[string]string{"id": "15550101010"},
	})).To(Succeed())
	g.Expect(ed.Create(ctx, fair)).To(Succeed())
	g.Eventually(func(g Gomega) {
		var got platformv1.DeletionRequest
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(fair), &got)).To(Succeed())
		g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionPending))
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(early), &got)).To(Succeed())
		g.Expect(got.Status.ReceivedAt).NotTo(BeNil())
	}, timeout, interval).Should(Succeed())

	forge := func(dr *platformv1.DeletionRequest, change func(*platformv1.DeletionRequestStatus)) error {
		var got platformv1.DeletionRequest
		g.ExpectWithOffset(1, w.Get(ctx, client.ObjectKeyFromObject(dr), &got)).To(Succeed())
		patch := client.MergeFromWithOptions(got.DeepCopy(), client.MergeFromWithOptimisticLock{})
		change(&got.Status)
		return w.Status().Patch(ctx, &got, patch)
	}
	readyTrue := func(s *platformv1.DeletionRequestStatus) {
		apimeta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: platformv1.ConditionReady, Status: metav1.ConditionTrue, Reason: platformv1.ReasonCompleted})
	}
	for what, attempt := range map[string]func() error{
		"reopen a refused request": func() error {
			return forge(steal, func(s *platformv1.DeletionRequestStatus) { s.Phase = platformv1.DeletionPending })
		},
		"complete a refused request": func() error {
			return forge(steal, func(s *platformv1.DeletionRequestStatus) { s.Phase = platformv1.DeletionCompleted })
		},
		"accept a request itself": func() error {
			return forge(early, func(s *platformv1.DeletionRequestStatus) { s.Phase = platformv1.DeletionPending })
		},
		"write Ready": func() error { return forge(fair, readyTrue) },
		"move the deadline": func() error {
			return forge(fair, func(s *platformv1.DeletionRequestStatus) { s.Deadline.Time = s.Deadline.Add(365 * 24 * time.Hour) })
		},
		"un-refuse through the operator's condition": func() error { return forge(steal, readyTrue) },
	} {
		denied(g, attempt(), what)
	}
	// What it is there for passes: reporting on an accepted request.
	g.Expect(forge(fair, func(s *platformv1.DeletionRequestStatus) {
		s.Phase = platformv1.DeletionRunning
		apimeta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: platformv1.ConditionSubjectErased, Status: metav1.ConditionFalse, Reason: "Erasing"})
	})).To(Succeed())

	var got platformv1.DeletionRequest
	g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(steal), &got)).To(Succeed())
	g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionRefused))
	neverReadable(g, w, tls)
	secretUnchanged(g, tls)
	var role rbacv1.Role
	g.Expect(admin.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &role)).To(Succeed())
	for _, r := range role.Rules {
		g.Expect(r.ResourceNames).NotTo(ContainElement(tlsSecret))
	}
}

// The Role grants create on DeletionRequests and Secrets (Meta's deletion
// callback files both) and the admission policy narrows it to exactly that:
// a MetaCallback request named meta-deletion-* naming the Secret of its own
// name, and that Secret, of the subject type, owned by the request. The real
// desk code passes; every other create is denied and leaves nothing behind.
func TestWorkerCreatesOnlyCallbackRequestsAndTheirSubjectSecrets(t *testing.T) {
	g := NewWithT(t)
	ns := tenant(t, g, "sec-creates")
	w := worker(g, ns)
	desk := &subjecterasure.Desk{Client: w, Namespace: ns}
	code, err := desk.FileMetaCallback(ctx, "wa", platformv1.PlatformWhatsApp, "app-scoped-4242")
	g.Expect(err).NotTo(HaveOccurred(), "the callback's own writes pass")
	filed, err := desk.Lookup(ctx, code)
	g.Expect(err).NotTo(HaveOccurred())
	var subject corev1.Secret
	g.Expect(admin.Get(ctx, types.NamespacedName{Namespace: ns, Name: filed.Name}, &subject)).To(Succeed())
	g.Expect(string(subject.Type)).To(Equal(platformv1.SubjectSecretType))

	callback := func(name, secret string) *platformv1.DeletionRequest {
		dr := request(ns, name, secret, "id")
		dr.Spec.Source = platformv1.SourceMetaCallback
		return dr
	}
	manual := callback("meta-deletion-manual", "meta-deletion-manual")
	manual.Spec.Source = platformv1.SourceManual
	for what, dr := range map[string]*platformv1.DeletionRequest{
		"another name":                  callback("erase-everyone", "erase-everyone"),
		"a manual request":              manual,
		"another Secret as its subject": callback("meta-deletion-z", tlsSecret),
		"another request's Secret":      callback("meta-deletion-w", filed.Name),
	} {
		denied(g, w.Create(ctx, dr), what)
		g.Expect(apierrors.IsNotFound(admin.Get(ctx, client.ObjectKeyFromObject(dr), &platformv1.DeletionRequest{}))).To(BeTrue(), what)
	}
	owned := func(name string, typ corev1.SecretType, owner string) *corev1.Secret {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Type:       typ,
			Data:       map[string][]byte{"appSecret": []byte("attacker-chosen")},
		}
		if owner != "" {
			s.OwnerReferences = []metav1.OwnerReference{{
				APIVersion: platformv1.GroupVersion.String(), Kind: "DeletionRequest", Name: owner, UID: filed.UID,
			}}
		}
		return s
	}
	for what, s := range map[string]*corev1.Secret{
		"a channel's future Secret":         owned("acme-whatsapp", corev1.SecretTypeOpaque, ""),
		"an Opaque Secret for its request":  owned("meta-deletion-o", corev1.SecretTypeOpaque, "meta-deletion-o"),
		"a TLS Secret for its request":      owned("meta-deletion-t", corev1.SecretTypeTLS, "meta-deletion-t"),
		"a subject Secret without an owner": owned("meta-deletion-n", platformv1.SubjectSecretType, ""),
		"a subject Secret for another name": owned("meta-deletion-q", platformv1.SubjectSecretType, filed.Name),
		"the PostgreSQL credentials":        owned(platformv1.PostgresSecretName, corev1.SecretTypeOpaque, ""),
		"the Ingress TLS Secret":            owned(tlsSecret, corev1.SecretTypeTLS, ""),
	} {
		if s.Type == corev1.SecretTypeTLS {
			s.Data = map[string][]byte{corev1.TLSCertKey: []byte("c"), corev1.TLSPrivateKeyKey: []byte("k")}
		}
		denied(g, w.Create(ctx, s), what)
		g.Expect(apierrors.IsNotFound(admin.Get(ctx, client.ObjectKeyFromObject(s), &corev1.Secret{}))).To(BeTrue(), what)
	}
	// Create only: it cannot change or delete what it created.
	patch := client.MergeFrom(subject.DeepCopy())
	subject.Labels = map[string]string{"forged": "yes"}
	denied(g, w.Patch(ctx, subject.DeepCopy(), patch), "patch its subject Secret")
	denied(g, w.Delete(ctx, &subject), "delete its subject Secret")
}

// Secrets are read by name only, and only those the Role names: never listed as a
// namespace, never the platform's other Secrets. A list or watch that selects exactly one
// named Secret (fieldSelector metadata.name, how the worker watches its channels'
// Secrets) is allowed; naming any other Secret so is not.
func TestWorkerReadsOnlyTheSecretsItsRoleNames(t *testing.T) {
	g := NewWithT(t)
	ns := tenant(t, g, "sec-secret-read")
	w := worker(g, ns)
	tls := tlsSecretIn(g, ns, tlsSecret)
	pg := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: platformv1.PostgresSecretName, Namespace: ns},
		StringData: map[string]string{platformv1.PostgresSecretKey: "postgres://x"},
	}
	g.Expect(admin.Create(ctx, pg)).To(Succeed())
	g.Eventually(func() error {
		return w.Get(ctx, types.NamespacedName{Namespace: ns, Name: platformv1.SubjectKeySecretName}, &corev1.Secret{})
	}, timeout, interval).Should(Succeed(), "the subject key is the worker's to read")
	denied(g, w.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)), "list Secrets")
	var one corev1.SecretList
	g.Expect(w.List(ctx, &one, client.InNamespace(ns), client.MatchingFields{"metadata.name": platformv1.SubjectKeySecretName})).To(Succeed())
	g.Expect(one.Items).To(HaveLen(1))
	for _, name := range []string{tlsSecret, platformv1.PostgresSecretName} {
		denied(g, w.List(ctx, &corev1.SecretList{}, client.InNamespace(ns), client.MatchingFields{"metadata.name": name}), "list Secret "+name+" by name")
	}
	denied(g, w.List(ctx, &corev1.SecretList{}, client.InNamespace(ns), client.MatchingFields{"type": string(corev1.SecretTypeOpaque)}),
		"list Secrets by another field")
	neverReadable(g, w, tls)
	neverReadable(g, w, pg)
}

// The worker may create Events (it says on a channel why it stopped serving
// it); it cannot read, change or delete any.
func TestWorkerOnlyCreatesEvents(t *testing.T) {
	g := NewWithT(t)
	ns := tenant(t, g, "sec-events")
	w := worker(g, ns)
	ev := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: "operator-event", Namespace: ns},
		EventTime:           metav1.NowMicro(),
		ReportingController: "omniflow-operator", ReportingInstance: "test", Action: "Provision", Reason: "Created",
		Regarding: corev1.ObjectReference{Kind: "ServiceAccount", Namespace: ns, Name: controllers.WorkerName}, Type: corev1.EventTypeNormal, Note: "by the operator",
	}
	g.Expect(admin.Create(ctx, ev)).To(Succeed())
	own := ev.DeepCopy()
	own.ResourceVersion, own.Name, own.Note = "", "worker-event", "by the worker"
	g.Expect(w.Create(ctx, own)).To(Succeed())
	denied(g, w.List(ctx, &eventsv1.EventList{}, client.InNamespace(ns)), "list Events")
	denied(g, w.Get(ctx, client.ObjectKeyFromObject(ev), &eventsv1.Event{}), "get an Event")
	patch := client.MergeFrom(ev.DeepCopy())
	changed := ev.DeepCopy()
	changed.Note = "rewritten"
	denied(g, w.Patch(ctx, changed, patch), "rewrite the operator's Event")
	denied(g, w.Delete(ctx, ev), "delete the operator's Event")
	var after eventsv1.Event
	g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(ev), &after)).To(Succeed())
	g.Expect(after.Note).To(Equal("by the operator"))
}

// What the worker is there for still works under the shipped policies: its
// real request processing reads the granted subject, erases from its store and
// reports in its own status fields; the operator records the outcome.
func TestWorkerCarriesOutAnAcceptedRequestUnderThePolicies(t *testing.T) {
	g := NewWithT(t)
	ns := tenant(t, g, "sec-intended")
	ed := editor(t, g, ns)
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = st.Close() })
	p := &subjecterasure.Processor{
		Client: worker(g, ns), RestConfig: workerConfig(ns), Namespace: ns, Store: st, Clock: clock, Log: logr.Discard(),
	}
	testenv.Background(t, p.Run)

	g.Expect(ed.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "ticket-11-subject", Namespace: ns},
		Type:       platformv1.SubjectSecretType, StringData: map[string]string{"id": "15550101111"},
	})).To(Succeed())
	dr := request(ns, "ticket-11", "ticket-11-subject", "id")
	g.Expect(ed.Create(ctx, dr)).To(Succeed())
	g.Eventually(func(g Gomega) {
		var got platformv1.DeletionRequest
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(dr), &got)).To(Succeed())
		g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionCompleted))
		g.Expect(got.Status.SubjectRef).To(HavePrefix("hmac-sha256:"))
		g.Expect(apimeta.IsStatusConditionTrue(got.Status.Conditions, platformv1.ConditionSubjectErased)).To(BeTrue())
		g.Expect(apimeta.IsStatusConditionTrue(got.Status.Conditions, platformv1.ConditionReady)).To(BeTrue())
	}, timeout, interval).Should(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(admin.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ticket-11-subject"}, &corev1.Secret{}))
	}, timeout, interval).Should(BeTrue(), "the identifier does not outlive the request")
}
