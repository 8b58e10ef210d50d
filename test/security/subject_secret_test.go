package security_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
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
