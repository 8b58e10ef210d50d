package security_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

const tlsKey = "-----BEGIN PRIVATE KEY-----\nnot-a-real-key\n-----END PRIVATE KEY-----\n"

func tlsSecretIn(g Gomega, ns, name string) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: []byte("cert"), corev1.TLSPrivateKeyKey: []byte(tlsKey)},
	}
	g.ExpectWithOffset(1, admin.Create(ctx, s)).To(Succeed())
	return s
}

// neverReadable fails if the worker can get the Secret at any moment of a
// few seconds (the operator has had every chance to grant it).
func neverReadable(g Gomega, w client.Client, s *corev1.Secret) {
	g.ConsistentlyWithOffset(1, func() bool {
		return apierrors.IsForbidden(w.Get(ctx, client.ObjectKeyFromObject(s), &corev1.Secret{}))
	}, 3*time.Second, interval).Should(BeTrue(), "the worker can read Secret %s", s.Name)
}

// The case: the worker files a "callback" request whose subject is the
// Ingress TLS Secret's private key. It must neither read the key nor get the
// operator to delete the Secret.
func TestWorkerCannotReadOrDeleteTheTLSKeyThroughACallbackRequest(t *testing.T) {
	g := NewWithT(t)
	ns := tenant(t, g, "sec-hooks")
	tls := tlsSecretIn(g, ns, tlsSecret)
	w := worker(g, ns)
	dr := &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "meta-deletion-x", Namespace: ns},
		Spec: platformv1.DeletionRequestSpec{
			Platform:         platformv1.PlatformWhatsApp,
			Source:           platformv1.SourceMetaCallback,
			SubjectSecretRef: platformv1.SecretKeyRef{Name: tlsSecret, Key: corev1.TLSPrivateKeyKey},
		},
	}
	err := w.Create(ctx, dr)
	g.Expect(apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "the policy lets the worker file it: %v", err)
	neverReadable(g, w, tls)
	secretUnchanged(g, tls)
}

// request is a DeletionRequest naming secret/key as its subject.
func request(ns, name, secret, key string) *platformv1.DeletionRequest {
	return &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: platformv1.DeletionRequestSpec{
			Platform:         platformv1.PlatformWhatsApp,
			SubjectSecretRef: platformv1.SecretKeyRef{Name: secret, Key: key},
		},
	}
}

// refused waits for the operator to refuse dr with reason, and checks that
// the refusal names no secret value.
func refused(g Gomega, dr *platformv1.DeletionRequest, reason string, values ...string) {
	g.EventuallyWithOffset(1, func(g Gomega) {
		var got platformv1.DeletionRequest
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(dr), &got)).To(Succeed())
		g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionRefused))
		ready := apimeta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Reason).To(Equal(reason))
		for _, v := range values {
			g.Expect(ready.Message).NotTo(ContainSubstring(v))
		}
	}, timeout, interval).Should(Succeed(), dr.Name)
}

// A TLS Secret that happens to carry a callback's name (an editor made it):
// the worker's request for it passes admission, and the operator refuses it
// for its type. The key is never readable and the Secret stays.
func TestWorkerCannotReadATLSSecretUnderACallbacksName(t *testing.T) {
	g := NewWithT(t)
	ns := tenant(t, g, "sec-callback-name")
	tls := tlsSecretIn(g, ns, "meta-deletion-y")
	w := worker(g, ns)
	dr := request(ns, "meta-deletion-y", "meta-deletion-y", corev1.TLSPrivateKeyKey)
	dr.Spec.Source = platformv1.SourceMetaCallback
	g.Expect(w.Create(ctx, dr)).To(Succeed())
	refused(g, dr, platformv1.ReasonNotASubjectSecret, tlsKey)
	neverReadable(g, w, tls)
	secretUnchanged(g, tls)
}

// A namespace editor files requests naming the platform's own Secrets: the
// database credentials, the Ingress TLS Secret, a channel's credentials, the
// subject key. Each is refused at once; none is granted to the worker,
// changed or deleted.
func TestEditorCannotGetThePlatformsSecretsReadOrDeleted(t *testing.T) {
	g := NewWithT(t)
	ns := tenant(t, g, "sec-editor")
	ed := editor(t, g, ns)
	w := worker(g, ns)
	const dsn = "postgres://tenant:pa55word@db/tenant"
	pg := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: platformv1.PostgresSecretName, Namespace: ns},
		StringData: map[string]string{platformv1.PostgresSecretKey: dsn},
	}
	g.Expect(admin.Create(ctx, pg)).To(Succeed())
	tls := tlsSecretIn(g, ns, tlsSecret)
	channelSecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "meta-app", Namespace: ns},
		// Even of the subject type: a Secret a channel uses is never a subject.
		Type:       platformv1.SubjectSecretType,
		StringData: map[string]string{"appSecret": "app-s3cret", "verifyToken": "t0ken"},
	}
	g.Expect(admin.Create(ctx, channelSecret)).To(Succeed())
	g.Expect(admin.Create(ctx, testenv.WhatsAppChannel(ns, "wa", "8001", "meta-app"))).To(Succeed())
	var key corev1.Secret
	g.Eventually(func() error {
		return admin.Get(ctx, types.NamespacedName{Namespace: ns, Name: platformv1.SubjectKeySecretName}, &key)
	}, timeout, interval).Should(Succeed())
	for _, s := range []*corev1.Secret{pg, tls, channelSecret} {
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(s), s)).To(Succeed())
	}

	for _, tc := range []struct {
		name   string
		secret *corev1.Secret
		key    string
	}{
		{"steal-dsn", pg, platformv1.PostgresSecretKey},
		{"steal-tls", tls, corev1.TLSPrivateKeyKey},
		{"steal-app-secret", channelSecret, "appSecret"},
		{"steal-key", &key, platformv1.SubjectKeySecretKey},
	} {
		dr := request(ns, tc.name, tc.secret.Name, tc.key)
		g.Expect(ed.Create(ctx, dr)).To(Succeed())
		refused(g, dr, platformv1.ReasonSubjectSecretInUse, dsn, tlsKey, "app-s3cret")
	}
	neverReadable(g, w, pg)
	neverReadable(g, w, tls)
	for _, s := range []*corev1.Secret{pg, tls, channelSecret, &key} {
		secretUnchanged(g, s)
	}
	// The editor cannot overrule the operator: status is not theirs to write.
	var dr platformv1.DeletionRequest
	g.Expect(ed.Get(ctx, types.NamespacedName{Namespace: ns, Name: "steal-dsn"}, &dr)).To(Succeed())
	patch := client.MergeFrom(dr.DeepCopy())
	dr.Status.Phase = platformv1.DeletionPending
	g.Expect(apierrors.IsForbidden(ed.Status().Patch(ctx, &dr, patch))).To(BeTrue(), "an editor wrote a request's status")
}

// A request for a channel the tenant does not have is refused, not completed
// with zero counts ("nothing was stored about this person").
func TestRequestForAnUnknownChannelIsRefused(t *testing.T) {
	g := NewWithT(t)
	ns := tenant(t, g, "sec-channel")
	ed := editor(t, g, ns)
	subject := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "ticket-9-subject", Namespace: ns},
		Type:       platformv1.SubjectSecretType,
		StringData: map[string]string{"id": "15550109999"},
	}
	g.Expect(ed.Create(ctx, subject)).To(Succeed())
	dr := request(ns, "ticket-9", subject.Name, "id")
	dr.Spec.Channel = "wa-typo"
	g.Expect(ed.Create(ctx, dr)).To(Succeed())
	refused(g, dr, platformv1.ReasonUnknownChannel, "15550109999")
	g.Consistently(func(g Gomega) {
		var got platformv1.DeletionRequest
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(dr), &got)).To(Succeed())
		g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionRefused))
		g.Expect(got.Status.Erased).To(BeNil())
	}, time.Second, interval).Should(Succeed())
}
