package erasure_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
)

// impersonating is a client that acts as user (with groups).
func impersonating(g Gomega, user string, groups ...string) client.Client {
	cfg := rest.CopyConfig(restCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append(groups, "system:authenticated")}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	return c
}

// Issue 12: the ownership mark decides what erasure may delete, so only the
// operator may write it. Attackers get every namespace verb from RBAC here (a
// platform user or a GitOps pipeline may well have them; a worker never
// should, but RBAC is not what is tested): the shipped policy alone refuses
// them setting, changing or removing a mark, while they may still label.
func TestOnlyTheOperatorMayWriteTheOwnershipMarks(t *testing.T) {
	g := NewWithT(t)
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "test-namespace-writer"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"},
			Verbs: []string{"get", "list", "create", "update", "patch"}}},
	}
	g.Expect(k8s.Create(ctx, role)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), role) })
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "test-namespace-writer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{
			{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "editor@example.test"},
			{Kind: rbacv1.ServiceAccountKind, Namespace: "tenant-victim", Name: "ingest-worker"},
		},
	}
	g.Expect(k8s.Create(ctx, binding)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), binding) })

	// A namespace the operator made for a Tenant, and one that GitOps labelled.
	victim := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   "tenant-victim",
		Labels: map[string]string{platformv1.LabelTenant: "victim"},
		Annotations: map[string]string{
			controllers.AnnotationTenantUID: "uid-victim", controllers.AnnotationNamespaceOrigin: controllers.OriginAdopted,
			controllers.AnnotationStorageBackend: string(platformv1.StorageSQLite),
		},
	}}
	g.Expect(asOperator.Create(ctx, victim)).To(Succeed(), "the operator may set its marks")
	labelled := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "team-payroll", Labels: map[string]string{platformv1.LabelTenant: "victim"},
	}}
	g.Expect(k8s.Create(ctx, labelled)).To(Succeed())
	for _, ns := range []*corev1.Namespace{victim, labelled} {
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	}

	refused := func(g Gomega, err error) {
		g.ExpectWithOffset(1, err).To(HaveOccurred())
		g.ExpectWithOffset(1, apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "want a denial, got %v", err)
		g.ExpectWithOffset(1, err.Error()).To(ContainSubstring("only the Omniflow operator may set, change or remove"))
	}
	annotate := func(c client.Client, name string, change func(map[string]string)) error {
		var ns corev1.Namespace
		if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
			return err
		}
		patch := client.MergeFrom(ns.DeepCopy())
		if ns.Annotations == nil {
			ns.Annotations = map[string]string{}
		}
		change(ns.Annotations)
		return c.Patch(ctx, &ns, patch)
	}

	relabel := func(c client.Client, name, tenant string) error {
		var ns corev1.Namespace
		if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
			return err
		}
		patch := client.MergeFrom(ns.DeepCopy())
		ns.Labels[platformv1.LabelTenant] = tenant
		return c.Patch(ctx, &ns, patch)
	}

	for _, attacker := range []struct {
		name string
		c    client.Client
	}{
		{"namespace editor", impersonating(g, "editor@example.test")},
		{"tenant worker", impersonating(g, "system:serviceaccount:tenant-victim:ingest-worker",
			"system:serviceaccounts", "system:serviceaccounts:tenant-victim")},
	} {
		t.Run(attacker.name, func(t *testing.T) {
			g := NewWithT(t)
			// The policy takes a moment to be enforced after it is installed.
			g.Eventually(func(g Gomega) {
				refused(g, annotate(attacker.c, labelled.Name, func(a map[string]string) { a[controllers.AnnotationTenantUID] = "uid-victim" }))
			}, timeout, interval).Should(Succeed(), "hand a labelled namespace to the erasure")
			refused(g, annotate(attacker.c, labelled.Name, func(a map[string]string) {
				a[controllers.AnnotationNamespaceOrigin] = controllers.OriginCreated
			}))
			refused(g, annotate(attacker.c, victim.Name, func(a map[string]string) {
				a[controllers.AnnotationNamespaceOrigin] = controllers.OriginCreated
			}))
			refused(g, annotate(attacker.c, victim.Name, func(a map[string]string) { a[controllers.AnnotationTenantUID] = "uid-other" }))
			refused(g, annotate(attacker.c, victim.Name, func(a map[string]string) { delete(a, controllers.AnnotationTenantUID) }))
			refused(g, annotate(attacker.c, victim.Name, func(a map[string]string) { a[controllers.AnnotationOrphanedAt] = "2001-01-01T00:00:00Z" }))
			// Nor may the tenant label of a bound namespace change: it names the Tenant.
			err := relabel(attacker.c, victim.Name, "someone-else")
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).To(ContainSubstring("only the Omniflow operator may change the label"))
			forged := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name:   "forged-mark",
				Labels: map[string]string{platformv1.LabelTenant: "victim"},
				Annotations: map[string]string{
					controllers.AnnotationTenantUID: "uid-victim", controllers.AnnotationNamespaceOrigin: controllers.OriginCreated,
				},
			}}
			refused(g, attacker.c.Create(ctx, forged))

			// Nothing changed, and what is not a mark stays theirs to write.
			var got corev1.Namespace
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(victim), &got)).To(Succeed())
			g.Expect(got.Annotations).To(Equal(victim.Annotations))
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(labelled), &got)).To(Succeed())
			for k := range got.Annotations {
				g.Expect(k).NotTo(HavePrefix(controllers.MarkPrefix))
			}
			g.Expect(annotate(attacker.c, labelled.Name, func(a map[string]string) { a["example.test/owner"] = "payroll" })).To(Succeed())
			g.Expect(relabel(attacker.c, labelled.Name, "victim")).To(Succeed(), "an unbound namespace's label stays theirs")
		})
	}

	// The operator itself may still set, change and remove its marks.
	g.Expect(annotate(asOperator, labelled.Name, func(a map[string]string) { a[controllers.AnnotationTenantUID] = "uid-victim" })).To(Succeed())
	g.Expect(annotate(asOperator, labelled.Name, func(a map[string]string) { delete(a, controllers.AnnotationTenantUID) })).To(Succeed())
}
