package testenv

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The suites run the operator as OperatorUser; the shipped namespace-marks
// policy must name exactly that identity, or the tests would prove nothing
// about the deployed operator.
func TestOperatorUserIsWhoThePolicyLetsSetMarks(t *testing.T) {
	policies, err := RenderDefault(IsAdmissionPolicy)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range policies {
		if p.GetKind() != "ValidatingAdmissionPolicy" || p.GetName() != "omniflow-namespace-marks" {
			continue
		}
		vars, _, _ := unstructured.NestedSlice(p.Object, "spec", "variables")
		got := map[string]string{}
		for _, v := range vars {
			m := v.(map[string]any)
			got[m["name"].(string)] = strings.Trim(m["expression"].(string), `"`)
		}
		want := "system:serviceaccount:" + got["operatorNamespace"] + ":" + got["operatorName"]
		if want != OperatorUser {
			t.Fatalf("the policy lets %q set the marks; the tests run the operator as %q", want, OperatorUser)
		}
		return
	}
	t.Fatal("config/default ships no omniflow-namespace-marks policy")
}
