package security_test

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
)

// tenant creates an Active Tenant and waits for the operator to provision its
// namespace and the worker's Role.
func tenant(t *testing.T, g Gomega, name string) string {
	t.Helper()
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: name}}
	g.Expect(admin.Create(ctx, tn)).To(Succeed())
	ns := tn.NamespaceName()
	g.Eventually(func() error {
		return admin.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &rbacv1.Role{})
	}, timeout, interval).Should(Succeed())
	return ns
}

// impersonate returns a client acting as user (with groups).
func impersonate(g Gomega, user string, groups ...string) client.Client {
	cfg := rest.CopyConfig(restCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return c
}

// worker acts as the tenant's worker ServiceAccount.
func worker(g Gomega, ns string) client.Client {
	c, err := client.New(workerConfig(ns), client.Options{Scheme: scheme})
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return c
}

// editor acts as a person bound to the built-in edit ClusterRole in ns (and
// to the rules config/default aggregates into it).
func editor(t *testing.T, g Gomega, ns string) client.Client {
	t.Helper()
	user := "editor@" + ns
	for _, role := range []string{"edit", editorRole} {
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "editor-" + role, Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
		}
		g.ExpectWithOffset(1, admin.Create(ctx, rb)).To(Succeed())
	}
	c := impersonate(g, user, "system:authenticated")
	// RBAC takes effect within moments: wait until the editor can list Secrets.
	g.EventuallyWithOffset(1, func() error { return c.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)) }, timeout, interval).Should(Succeed())
	return c
}

// secretUnchanged fails unless the Secret still exists with the same
// resourceVersion (nothing changed, nothing deleted).
func secretUnchanged(g Gomega, before *corev1.Secret) {
	var now corev1.Secret
	g.ExpectWithOffset(1, admin.Get(ctx, client.ObjectKeyFromObject(before), &now)).To(Succeed(), "Secret %s deleted", before.Name)
	g.ExpectWithOffset(1, now.ResourceVersion).To(Equal(before.ResourceVersion), "Secret %s changed", before.Name)
}
