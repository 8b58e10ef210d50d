package security_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/clusterkey"
	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
)

// keyFor waits until the operator has made a tenant's data key and granted its worker
// access, and returns the key Secret.
func keyFor(g Gomega, tenantName string) *corev1.Secret {
	var tn platformv1.Tenant
	g.Expect(admin.Get(ctx, types.NamespacedName{Name: tenantName}, &tn)).To(Succeed())
	key := types.NamespacedName{Namespace: operatorNamespace, Name: controllers.DataKeySecretName(tn.Name, tn.UID)}
	var s corev1.Secret
	g.Eventually(func(g Gomega) {
		g.Expect(admin.Get(ctx, key, &s)).To(Succeed())
		g.Expect(admin.Get(ctx, key, &rbacv1.RoleBinding{})).To(Succeed())
	}, timeout, interval).Should(Succeed())
	return &s
}

// The data key lives where nobody of the tenant's namespace can read it: the editor
// (who may read every Secret of the namespace) gets nothing, another tenant's worker
// gets nothing, and the tenant's own worker may get and watch that one Secret by name,
// and change nothing.
func TestOnlyTheTenantsOwnWorkerMayReadItsDataKey(t *testing.T) {
	g := NewWithT(t)
	nsA := tenant(t, g, "sec-key-a")
	nsB := tenant(t, g, "sec-key-b")
	keyA := keyFor(g, "sec-key-a")
	keyB := keyFor(g, "sec-key-b")
	ed := editor(t, g, nsA)
	wA, wB := worker(g, nsA), worker(g, nsB)

	// The tenant's namespace editor: not in their namespace, not readable where it is.
	denied(g, ed.Get(ctx, client.ObjectKeyFromObject(keyA), &corev1.Secret{}), "editor gets the data key")
	denied(g, ed.List(ctx, &corev1.SecretList{}, client.InNamespace(operatorNamespace)), "editor lists the operator's Secrets")
	denied(g, ed.List(ctx, &corev1.SecretList{}, client.InNamespace(operatorNamespace), client.MatchingFields{"metadata.name": keyA.Name}),
		"editor watches the data key by name")
	var theirs corev1.SecretList
	g.Expect(ed.List(ctx, &theirs, client.InNamespace(nsA))).To(Succeed())
	for _, s := range theirs.Items {
		for k, v := range s.Data {
			g.Expect(bytes.Contains(v, keyA.Data["key-1"])).To(BeFalse(), "Secret %s/%s key %s holds the data key", nsA, s.Name, k)
		}
	}

	// Another tenant's worker.
	denied(g, wB.Get(ctx, client.ObjectKeyFromObject(keyA), &corev1.Secret{}), "another tenant's worker gets the data key")
	denied(g, wB.List(ctx, &corev1.SecretList{}, client.InNamespace(operatorNamespace), client.MatchingFields{"metadata.name": keyA.Name}),
		"another tenant's worker watches the data key")

	// Its own worker: get, and list or watch that one name; nothing else.
	var got corev1.Secret
	g.Expect(wA.Get(ctx, client.ObjectKeyFromObject(keyA), &got)).To(Succeed())
	g.Expect(got.Data).To(Equal(keyA.Data))
	var one corev1.SecretList
	g.Expect(wA.List(ctx, &one, client.InNamespace(operatorNamespace), client.MatchingFields{"metadata.name": keyA.Name})).To(Succeed())
	g.Expect(one.Items).To(HaveLen(1))
	denied(g, wA.List(ctx, &corev1.SecretList{}, client.InNamespace(operatorNamespace)), "worker lists the operator's Secrets")
	denied(g, wA.Get(ctx, client.ObjectKeyFromObject(keyB), &corev1.Secret{}), "worker gets another tenant's key")
	patch := client.MergeFrom(got.DeepCopy())
	got.Data["active"] = []byte("9")
	denied(g, wA.Patch(ctx, got.DeepCopy(), patch), "worker changes its key")
	denied(g, wA.Delete(ctx, got.DeepCopy()), "worker deletes its key")
	var after corev1.Secret
	g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(keyA), &after)).To(Succeed())
	g.Expect(after.Data).To(Equal(keyA.Data))
}

// The worker, under the Role the operator grants, loads its key ring by a watch of its
// name, sees a rotation within seconds, and loses the ring the moment the erasure
// destroys the key.
func TestTheWorkerFollowsItsKeyThroughRotationAndDestruction(t *testing.T) {
	g := NewWithT(t)
	ns := tenant(t, g, "sec-key-life")
	key := keyFor(g, "sec-key-life")
	w, err := clusterkey.New(clusterkey.Config{RestConfig: workerConfig(ns), Namespace: key.Namespace, Name: key.Name, Log: logr.Discard()})
	g.Expect(err).NotTo(HaveOccurred())
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = w.Run(runCtx) }()
	g.Expect(w.WaitLoaded(ctx, timeout)).To(Succeed())
	// A key it is not granted (or that does not exist) is never loaded: the worker
	// would not start, and says why.
	other, err := clusterkey.New(clusterkey.Config{RestConfig: workerConfig(ns), Namespace: key.Namespace, Name: key.Name + "x", Log: logr.Discard()})
	g.Expect(err).NotTo(HaveOccurred())
	go func() { _ = other.Run(runCtx) }()
	g.Expect(other.WaitLoaded(ctx, 3*time.Second)).To(MatchError(ContainSubstring("not loaded within 3s")))
	ring, err := w.Ring()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ring.ActiveVersion()).To(Equal(datakey.Version(1)))
	// The first load signalled a change (the encryption pass's wake-up): drain it.
	g.Expect(w.Changed()).To(Receive())
	id := datakey.Identity("messages", "m1")
	sealed, err := ring.Seal([]byte("before the rotation"), id)
	g.Expect(err).NotTo(HaveOccurred())

	var tn platformv1.Tenant
	g.Expect(admin.Get(ctx, types.NamespacedName{Name: "sec-key-life"}, &tn)).To(Succeed())
	patch := client.MergeFrom(tn.DeepCopy())
	tn.Spec.Encryption.RotationToken = "2026-11-30"
	g.Expect(admin.Patch(ctx, &tn, patch)).To(Succeed())
	g.Eventually(func(g Gomega) {
		r, err := w.Ring()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(r.ActiveVersion()).To(Equal(datakey.Version(2)))
		plain, err := r.Open(sealed, id)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(plain)).To(Equal("before the rotation"))
	}, 10*time.Second, interval).Should(Succeed(), "a rotation is in force within seconds, old records still readable")
	g.Expect(w.Changed()).To(Receive(), "the rotation wakes the encryption pass")

	// Erasure: the key is destroyed first, and the worker can read nothing any more.
	g.Expect(admin.Get(ctx, types.NamespacedName{Name: "sec-key-life"}, &tn)).To(Succeed())
	patch = client.MergeFrom(tn.DeepCopy())
	tn.Spec.State = platformv1.TenantDeactivated
	tn.Spec.Erasure.GracePeriod = &metav1.Duration{}
	g.Expect(admin.Patch(ctx, &tn, patch)).To(Succeed())
	g.Eventually(func(g Gomega) {
		_, err := w.Ring()
		g.Expect(err).To(MatchError(ContainSubstring("was deleted")))
	}, timeout, interval).Should(Succeed())
}
