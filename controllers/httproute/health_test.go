package httproute_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/healthtable"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// A tenant waiting for its Gateway is in progress; one whose route the
// Gateway refused is Failed, for the real kstatus library (the rows of
// internal/healthtable that need a Gateway).
func TestKstatusFollowsTheGatewayVerdict(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tn := tenant(g, "gw-health")
	inState := func(reason string) {
		g.Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, types.NamespacedName{Name: tn.Name}, tn)).To(Succeed())
			ready := routeReady(g, tn.Name)
			g.Expect(ready.Reason).To(Equal(reason))
			g.Expect(healthtable.KeyOf(tn)).To(ContainSubstring("/" + reason + "/"))
			g.Expect(healthtable.Check(tn)).To(Succeed())
		}, timeout, interval).Should(Succeed())
	}
	// Nothing makes the worker available here: do it, so that the route is
	// what Ready waits for.
	var r gatewayv1.HTTPRoute
	g.Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: tn.NamespaceName(), Name: controllers.RouteName}, &r)
	}, timeout, interval).Should(Succeed())
	g.Eventually(func() error { return testenv.MarkWorkerUp(ctx, k8s, tn.NamespaceName()) }, timeout, interval).Should(Succeed())
	inState(platformv1.ReasonHTTPRoutePending)
	gatewaySays(g, &r, false, "NotAllowedByListeners", "no listener allows routes from namespace tenant-gw-health")
	inState(platformv1.ReasonHTTPRouteNotAccepted)
}
