package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// installWorkerPolicy applies, for real, the admission policies and bindings that
// config/default ships, and removes them when the test ends.
func installWorkerPolicy(t *testing.T, g Gomega) {
	t.Helper()
	objs, err := testenv.InstallPolicies(context.Background(), k8s)
	g.Expect(err).NotTo(HaveOccurred())
	for _, obj := range objs {
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), obj) })
	}
	g.Expect(objs).To(HaveLen(2), "config/default ships the policy and its binding")
}

// RBAC lets a tenant's worker create Secrets and DeletionRequests (Meta's deletion
// callback needs both) but cannot limit a create by name. The shipped admission policy
// does: the worker files callback requests and their Secrets, through the real desk code,
// and nothing else; nobody else is affected.
func TestWorkerCreatesOnlyCallbackRequestsAndTheirSecrets(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	installWorkerPolicy(t, g)
	ns := mchTenant(t, g, "vap")
	worker := workerClient(g, ns)

	secret := func(name, typ string, owner *platformv1.DeletionRequest) *corev1.Secret {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Type:       corev1.SecretType(typ),
			Data:       map[string][]byte{"appSecret": []byte("attacker-chosen")},
		}
		if owner != nil {
			s.OwnerReferences = []metav1.OwnerReference{{
				APIVersion: platformv1.GroupVersion.String(), Kind: "DeletionRequest", Name: owner.Name, UID: owner.UID,
			}}
		}
		return s
	}
	denied := func(err error, says string) {
		g.ExpectWithOffset(1, apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "want a denial, got %v", err)
		g.ExpectWithOffset(1, err.Error()).To(ContainSubstring(says))
	}

	// Wait until the worker's Role grants create and the API server enforces the policy:
	// until then a probe may be created, under a name nobody uses.
	probe := 0
	g.Eventually(func() error {
		probe++
		err := worker.Create(ctx, secret(fmt.Sprintf("probe-%d", probe), "Opaque", nil))
		if err == nil {
			return fmt.Errorf("probe-%d created: policy not enforced yet", probe)
		}
		if !strings.Contains(err.Error(), "meta-deletion-*") {
			return err
		}
		return nil
	}, timeout, interval).Should(Succeed())

	// Any other Secret, e.g. one a MetaChannel is about to reference: refused.
	denied(worker.Create(ctx, secret("acme-whatsapp", "Opaque", nil)), "may only create objects named meta-deletion-*, not acme-whatsapp")
	// A callback-looking name without its request, or of another type: refused.
	denied(worker.Create(ctx, secret("meta-deletion-orphan", "Opaque", nil)), "owned by the DeletionRequest of the same name")
	// A request that is not the callback's: refused.
	manual := &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "meta-deletion-manual", Namespace: ns},
		Spec: platformv1.DeletionRequestSpec{
			Platform:         platformv1.PlatformWhatsApp,
			SubjectSecretRef: platformv1.SecretKeyRef{Name: "meta-deletion-manual", Key: "id"},
		},
	}
	denied(worker.Create(ctx, manual), "source MetaCallback")
	manual.Name = "erase-everyone"
	manual.Spec.Source = platformv1.SourceMetaCallback
	denied(worker.Create(ctx, manual), "not erase-everyone")

	// What the callback really does passes: the worker's own desk code files a request
	// and its Secret.
	desk := &subjecterasure.Desk{Client: worker, Namespace: ns}
	code, err := desk.FileMetaCallback(ctx, "wa", platformv1.PlatformWhatsApp, "app-scoped-4242")
	g.Expect(err).NotTo(HaveOccurred())
	filed, err := desk.Lookup(ctx, code)
	g.Expect(err).NotTo(HaveOccurred())
	var subject corev1.Secret
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: filed.Spec.SubjectSecretRef.Name}, &subject)).To(Succeed())
	// ...but a second Secret for that request, of another type, is not.
	denied(worker.Create(ctx, secret(filed.Name+"-x", "Opaque", filed)), "owned by the DeletionRequest of the same name")
	g.Expect(k8s.Delete(ctx, &subject)).To(Succeed())
	denied(worker.Create(ctx, secret(filed.Name, "example.com/custom", filed)), "must be Opaque")

	// People, GitOps tools and the operator are not the worker: not affected.
	g.Expect(k8s.Create(ctx, secret("acme-whatsapp", "Opaque", nil))).To(Succeed())
	g.Expect(k8s.Delete(ctx, filed)).To(Succeed())
}
