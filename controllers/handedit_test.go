package controllers_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
)

// Every object of a tenant's worker edited by hand (kubectl edit: an update
// that takes the edited field over) is put right, though the cache keeps of
// them only a digest of what the operator applied (cache_digest.go): the
// edit changes the digest the transform takes of the live object.
func TestWorkerObjectsEditedByHandArePutRight(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tn := newTenant("handedit")
	createTenant(t, tn)
	ns := "tenant-handedit"
	worker := types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}
	blanketSecretList := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list"}}

	for _, tc := range []struct {
		name  string
		obj   client.Object
		key   types.NamespacedName
		edit  func(client.Object)
		right func(Gomega, client.Object)
	}{
		{"Deployment image", &appsv1.Deployment{}, worker,
			func(o client.Object) {
				o.(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Image = "example.test/by-hand:1"
			},
			func(g Gomega, o client.Object) {
				g.Expect(o.(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Image).To(Equal(testWorkerImage))
			}},
		{"Service target port", &corev1.Service{}, worker,
			func(o client.Object) { o.(*corev1.Service).Spec.Ports[0].TargetPort = intstr.FromInt32(9999) },
			func(g Gomega, o client.Object) {
				g.Expect(o.(*corev1.Service).Spec.Ports).To(HaveLen(1))
				g.Expect(o.(*corev1.Service).Spec.Ports[0].TargetPort).To(Equal(intstr.FromString(controllers.WebhookPortName)))
			}},
		{"NetworkPolicy port", &networkingv1.NetworkPolicy{}, worker,
			func(o client.Object) {
				p := intstr.FromInt32(1234)
				o.(*networkingv1.NetworkPolicy).Spec.Ingress[0].Ports[0].Port = &p
			},
			func(g Gomega, o client.Object) {
				g.Expect(o.(*networkingv1.NetworkPolicy).Spec.Ingress[0].Ports[0].Port.IntValue()).To(Equal(controllers.WebhookPort))
			}},
		{"Role rules", &rbacv1.Role{}, worker,
			func(o client.Object) {
				r := o.(*rbacv1.Role)
				r.Rules = []rbacv1.PolicyRule{blanketSecretList}
			},
			func(g Gomega, o client.Object) {
				g.Expect(o.(*rbacv1.Role).Rules).NotTo(ContainElement(blanketSecretList), "the hand-written rule is gone")
				g.Expect(o.(*rbacv1.Role).Rules).To(ContainElement(HaveField("Resources", ContainElement("metachannels"))))
			}},
		{"RoleBinding subject", &rbacv1.RoleBinding{}, worker,
			func(o client.Object) { o.(*rbacv1.RoleBinding).Subjects[0].Name = "someone-else" },
			func(g Gomega, o client.Object) {
				g.Expect(o.(*rbacv1.RoleBinding).Subjects).To(ConsistOf(HaveField("Name", controllers.WorkerName)))
			}},
		{"ServiceAccount tenant label", &corev1.ServiceAccount{}, worker,
			func(o client.Object) { o.GetLabels()[platformv1.LabelTenant] = "someone-else" },
			func(g Gomega, o client.Object) {
				g.Expect(o.GetLabels()).To(HaveKeyWithValue(platformv1.LabelTenant, tn.Name))
			}},
		{"Ingress path", &networkingv1.Ingress{}, types.NamespacedName{Namespace: ns, Name: controllers.RouteName},
			func(o client.Object) { o.(*networkingv1.Ingress).Spec.Rules[0].HTTP.Paths[0].Path = "/elsewhere/" },
			func(g Gomega, o client.Object) {
				g.Expect(o.(*networkingv1.Ingress).Spec.Rules[0].HTTP.Paths[0].Path).To(Equal(controllers.TenantRoutePrefix(tn.Name)))
			}},
	} {
		g.Eventually(func() error { return k8s.Get(ctx, tc.key, tc.obj) }, timeout, interval).Should(Succeed(), tc.name)
		g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := k8s.Get(ctx, tc.key, tc.obj); err != nil {
				return err
			}
			tc.edit(tc.obj)
			return k8s.Update(ctx, tc.obj, client.FieldOwner("kubectl-edit"))
		})).To(Succeed(), tc.name)
		g.Eventually(func(g Gomega) {
			fresh := tc.obj.DeepCopyObject().(client.Object)
			g.Expect(k8s.Get(ctx, tc.key, fresh)).To(Succeed())
			tc.right(g, fresh)
		}, timeout, interval).Should(Succeed(), "%s edited by hand is not put right", tc.name)
	}
}
