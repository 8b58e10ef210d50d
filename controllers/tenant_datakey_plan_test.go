package controllers

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ktypes "k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

func keyMeta(tenant, uid string, annotations map[string]string) client.Object {
	m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name: DataKeySecretName(tenant, ktypes.UID(uid)), Namespace: "omniflow-system",
		Labels:      dataKeyLabels(tenant),
		Annotations: map[string]string{AnnotationTenantUID: uid},
	}}
	for k, v := range annotations {
		m.Annotations[k] = v
	}
	return m
}

func TestPlanDataKey(t *testing.T) {
	t.Parallel()
	tenant := func(token string, version int32) *platformv1.Tenant {
		tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme", UID: "uid-1"}}
		tn.Spec.Encryption.RotationToken = token
		if version > 0 {
			tn.Status.Encryption = &platformv1.EncryptionStatus{KeyVersion: version}
		}
		return tn
	}
	ref := tenantRef{Name: "acme", UID: "uid-1"}
	honoured := map[string]string{AnnotationRotationToken: "q4"}
	tests := []struct {
		name   string
		tenant *platformv1.Tenant
		secret client.Object
		want   dataKeyPlan
	}{
		{"never made: make it", tenant("", 0), nil, keyCreate},
		{"never made, with a token: make it (the token is honoured by creation)", tenant("q4", 0), nil, keyCreate},
		{"made once and gone: never made again", tenant("", 1), nil, keyLost},
		{"in place, nothing asked", tenant("", 1), keyMeta("acme", "uid-1", nil), keyKeep},
		{"a new token: rotate", tenant("q4", 1), keyMeta("acme", "uid-1", nil), keyRotate},
		{"the token honoured: keep", tenant("q4", 2), keyMeta("acme", "uid-1", honoured), keyKeep},
		{"another token after one honoured: rotate", tenant("q1", 2), keyMeta("acme", "uid-1", honoured), keyRotate},
		{"the token removed: keep", tenant("", 2), keyMeta("acme", "uid-1", honoured), keyKeep},
		{"bound to another UID: not ours", tenant("", 0), keyMeta("acme", "uid-2", nil), keyForeign},
		{"another tenant's label: not ours", tenant("", 0), keyMeta("other", "uid-1", nil), keyForeign},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := planDataKey(tc.tenant, ref, tc.secret); got != tc.want {
				t.Fatalf("planDataKey = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestDataKeySecretNameIsBoundToTheUIDAndFitsAName(t *testing.T) {
	t.Parallel()
	a, b := DataKeySecretName("acme", "uid-1"), DataKeySecretName("acme", "uid-2")
	if a == b || !strings.HasPrefix(a, "tenant-key-acme-") || a != DataKeySecretName("acme", "uid-1") {
		t.Fatalf("names %q and %q: want distinct per UID, stable, and naming the tenant", a, b)
	}
	long := DataKeySecretName(strings.Repeat("x", 253), "uid-1")
	if len(long) > 253 || long == DataKeySecretName(strings.Repeat("x", 253), "uid-2") {
		t.Fatalf("a long tenant name gives %d characters, or loses the UID", len(long))
	}
}

func TestErasureLooksForTheKeyWhereItWasRecorded(t *testing.T) {
	t.Parallel()
	tn := &platformv1.Tenant{}
	if got := recordedDataKey(tn); got.Name != "" {
		t.Fatalf("nothing recorded: %v", got)
	}
	tn.Status.Encryption = &platformv1.EncryptionStatus{KeySecret: "old-ns/tenant-key-acme-0123456789"}
	if got := recordedDataKey(tn); got != (ktypes.NamespacedName{Namespace: "old-ns", Name: "tenant-key-acme-0123456789"}) {
		t.Fatalf("recorded: %v", got)
	}
	tn.Status.Encryption.KeySecret = "no-slash"
	if got := recordedDataKey(tn); got.Name != "" {
		t.Fatalf("malformed record used: %v", got)
	}
}

func TestEncryptionProgressBelievesOnlyAWellFormedReportWithinTheKey(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		last   int32 // sealedVersion before
		doc    string
		sealed int32
		full   bool
	}{
		{"no report yet", 0, "", 0, false},
		{"pass under way", 0, `{"reportedAt":null,"activeVersion":2,"sealedVersion":0,"fullyEncrypted":false}`, 0, false},
		{"pass under way after a rotation", 1, `{"reportedAt":null,"activeVersion":2,"sealedVersion":1,"fullyEncrypted":false}`, 1, false},
		{"complete", 1, `{"reportedAt":null,"activeVersion":2,"sealedVersion":2,"fullyEncrypted":true}`, 2, true},
		{"the worker's flag is not the operator's", 1, `{"reportedAt":null,"activeVersion":1,"sealedVersion":1,"fullyEncrypted":true}`, 1, false},
		{"a version beyond the key's", 1, `{"reportedAt":null,"activeVersion":3,"sealedVersion":3,"fullyEncrypted":true}`, 1, false},
		{"negative", 2, `{"reportedAt":null,"sealedVersion":-1}`, 2, true},
		{"unknown field", 1, `{"reportedAt":null,"sealedVersion":2,"text":"x"}`, 1, false},
		{"not JSON", 2, `sealed`, 2, true},
	} {
		got := encryptionProgress(&platformv1.EncryptionStatus{KeyVersion: 2, SealedVersion: c.last}, c.doc)
		if got.SealedVersion != c.sealed || got.FullyEncrypted != c.full {
			t.Errorf("%s: sealedVersion %d, fullyEncrypted %v; want %d, %v", c.name, got.SealedVersion, got.FullyEncrypted, c.sealed, c.full)
		}
	}
	if encryptionProgress(nil, `{"sealedVersion":1}`) != nil {
		t.Error("a report made status.encryption appear without a key")
	}
}
