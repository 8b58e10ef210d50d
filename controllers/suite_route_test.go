package controllers_test

import (
	"github.com/omniflowcrm/omniflow-operator/controllers"
)

// suiteRoute is the route configuration the suite's manager runs with:
// zero (Ingress without class, host or TLS; no webhook URL). The route and
// channel tests expect what it says.
var suiteRoute controllers.RouteConfig
