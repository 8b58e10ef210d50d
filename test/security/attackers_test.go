package security_test

import (
	"strings"
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

// editor acts as a person bound to the built-in edit ClusterRole in ns. No
// aggregation controller runs beside this API server, so the person is bound
// to every ClusterRole that aggregation would fold into edit (the built-in
// rules and the shipped editor role), found by edit's own selectors.
func editor(t *testing.T, g Gomega, ns string) client.Client {
	t.Helper()
	user := "editor@" + ns
	for _, role := range aggregated(g, "edit") {
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "editor-" + strings.ReplaceAll(role, ":", "-"), Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
		}
		g.ExpectWithOffset(1, admin.Create(ctx, rb)).To(Succeed())
	}
	c := impersonate(g, user, "system:authenticated")
	// RBAC takes effect within moments: wait until the editor can list Secrets
	// and DeletionRequests.
	g.EventuallyWithOffset(1, func() error {
		if err := c.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)); err != nil {
			return err
		}
		return c.List(ctx, &platformv1.DeletionRequestList{}, client.InNamespace(ns))
	}, timeout, interval).Should(Succeed())
	return c
}

// aggregated lists the ClusterRoles whose rules the aggregation controller
// would fold into the ClusterRole name, following nested aggregation.
func aggregated(g Gomega, name string) []string {
	var role rbacv1.ClusterRole
	g.ExpectWithOffset(1, admin.Get(ctx, types.NamespacedName{Name: name}, &role)).To(Succeed())
	if role.AggregationRule == nil {
		return []string{name}
	}
	var out []string
	for _, sel := range role.AggregationRule.ClusterRoleSelectors {
		s, err := metav1.LabelSelectorAsSelector(&sel)
		g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
		var list rbacv1.ClusterRoleList
		g.ExpectWithOffset(1, admin.List(ctx, &list, client.MatchingLabelsSelector{Selector: s})).To(Succeed())
		for _, r := range list.Items {
			if r.Name != name {
				out = append(out, aggregated(g, r.Name)...)
			}
		}
	}
	return out
}

// secretUnchanged fails unless the Secret still exists with the same
// resourceVersion (nothing changed, nothing deleted).
func secretUnchanged(g Gomega, before *corev1.Secret) {
	var now corev1.Secret
	g.ExpectWithOffset(1, admin.Get(ctx, client.ObjectKeyFromObject(before), &now)).To(Succeed(), "Secret %s deleted", before.Name)
	g.ExpectWithOffset(1, now.ResourceVersion).To(Equal(before.ResourceVersion), "Secret %s changed", before.Name)
}
