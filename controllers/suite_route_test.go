package controllers_test

import (
	"github.com/omniflowcrm/omniflow-operator/controllers"
)

// testRoute is the route configuration that configureRoute gives the
// suite's manager: every flag set, so that the tests see each of them on
// the Ingress and in status.webhookURL.
var testRoute = controllers.RouteConfig{
	WebhookBaseURL:     "https://hooks.example.test/omniflow",
	IngressClass:       "omniflow-test",
	IngressHost:        "hooks.example.test",
	IngressTLSSecret:   "hooks-tls",
	IngressAnnotations: map[string]string{"example.test/proxy-body-size": "4m"},
}

// suiteRoute is the route configuration the suite's manager runs with:
// zero (Ingress without class, host or TLS; no webhook URL) unless TestMain
// calls configureRoute. The route and channel tests expect what it says.
var suiteRoute controllers.RouteConfig

// configureRoute sets the manager options' route configuration to
// testRoute. TestMain calls it on the Options it passes to SetupAll.
func configureRoute(opts *controllers.Options) {
	opts.Route = testRoute
	suiteRoute = testRoute
}
