package clusterkey_test

import (
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/clusterkey"
)

// The worker's rotation and destruction behaviour under the Role the operator grants is
// tested against a real API server in test/security
// (TestTheWorkerFollowsItsKeyThroughRotationAndDestruction).
func TestParseRefWantsNamespaceAndName(t *testing.T) {
	t.Parallel()
	ns, name, err := clusterkey.ParseRef("omniflow-system/tenant-key-acme-0123456789")
	if err != nil || ns != "omniflow-system" || name != "tenant-key-acme-0123456789" {
		t.Fatalf("ParseRef = %q, %q, %v", ns, name, err)
	}
	for _, bad := range []string{"", "name-only", "/name", "ns/", "ns/a/b"} {
		if _, _, err := clusterkey.ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) accepted", bad)
		}
	}
}
