package controllers_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// The API server must refuse what a user can get wrong, with a message
// that names the field. Objects are written as YAML, as a user would.
func TestInvalidObjectsAreRefusedWithTheField(t *testing.T) {
	ctx := context.Background()
	const ns = "validation"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	secretRefs := `
  appSecretRef: {name: app, key: appSecret}
  verifyTokenRef: {name: app, key: verifyToken}`
	drSpec := `
  platform: WhatsApp
  subjectSecretRef: {name: subject, key: id}`

	tests := []struct {
		name string
		yaml string
		// every fragment must appear in the API server's message
		want []string
	}{
		{"tenant grace period over 13 days", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: Tenant
metadata: {name: bad-grace}
spec:
  erasure: {gracePeriod: 336h}`, []string{"spec.erasure.gracePeriod", "at most 312h"}},
		{"tenant grace period not a duration", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: Tenant
metadata: {name: bad-grace-format}
spec:
  erasure: {gracePeriod: 7d}`, []string{"spec.erasure.gracePeriod", "should match"}},
		{"tenant unknown state", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: Tenant
metadata: {name: bad-state}
spec:
  state: Paused`, []string{"spec.state", "Unsupported value", "Active", "Deactivated"}},
		{"tenant unknown storage backend", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: Tenant
metadata: {name: bad-backend}
spec:
  storage: {backend: MySQL}`, []string{"spec.storage.backend", "Unsupported value"}},
		{"tenant several SQLite replicas", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: Tenant
metadata: {name: bad-replicas}
spec:
  worker: {replicas: 3}`, []string{"spec", "worker.replicas above 1 needs storage.backend PostgreSQL"}},
		{"tenant name not a DNS label", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: Tenant
metadata: {name: bad.name}
spec: {}`, []string{"metadata.name must be a DNS label"}},
		{"tenant namespace not a DNS label", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: Tenant
metadata: {name: bad-namespace}
spec:
  namespace: Tenant_NS`, []string{"spec.namespace", "should match"}},
		{"tenant retention under a day", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: Tenant
metadata: {name: bad-retention}
spec:
  retention: {messagesMaxAge: 1h}`, []string{"spec.retention.messagesMaxAge", "at least 24h"}},
		{"whatsapp channel without its ids", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaChannel
metadata: {name: wa-missing, namespace: validation}
spec:
  platform: WhatsApp` + secretRefs, []string{"spec", "whatsApp is required for platform WhatsApp"}},
		{"whatsapp channel without business account id", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaChannel
metadata: {name: wa-no-waba, namespace: validation}
spec:
  platform: WhatsApp
  whatsApp: {phoneNumberID: "1065"}` + secretRefs, []string{"spec.whatsApp.businessAccountID", "Required value"}},
		{"whatsapp phone number id is not the phone number", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaChannel
metadata: {name: wa-phone, namespace: validation}
spec:
  platform: WhatsApp
  whatsApp: {phoneNumberID: "+1 650 555 1234", businessAccountID: "1022"}` + secretRefs, []string{"spec.whatsApp.phoneNumberID", "should match"}},
		{"messenger channel without page id", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaChannel
metadata: {name: fb-missing, namespace: validation}
spec:
  platform: Messenger` + secretRefs, []string{"messenger is required for platform Messenger"}},
		{"instagram channel without account id", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaChannel
metadata: {name: ig-missing, namespace: validation}
spec:
  platform: Instagram` + secretRefs, []string{"instagram is required for platform Instagram"}},
		{"messenger channel carrying whatsapp ids", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaChannel
metadata: {name: fb-mixed, namespace: validation}
spec:
  platform: Messenger
  messenger: {pageID: "1234"}
  whatsApp: {phoneNumberID: "1065", businessAccountID: "1022"}` + secretRefs, []string{"whatsApp may only be set for platform WhatsApp"}},
		{"channel of an unknown platform", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaChannel
metadata: {name: tg, namespace: validation}
spec:
  platform: Telegram` + secretRefs, []string{"spec.platform", "Unsupported value"}},
		{"channel without app secret", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaChannel
metadata: {name: no-secret, namespace: validation}
spec:
  platform: Messenger
  messenger: {pageID: "1234"}
  verifyTokenRef: {name: app, key: verifyToken}`, []string{"spec.appSecretRef", "Required value"}},
		{"channel graph API URL not http", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaChannel
metadata: {name: bad-url, namespace: validation}
spec:
  platform: Messenger
  messenger: {pageID: "1234"}
  graphAPIBaseURL: "ftp://graph.example.test"` + secretRefs, []string{"spec.graphAPIBaseURL", "must be an http(s) URL"}},
		{"deletion request without subject", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: DeletionRequest
metadata: {name: no-subject, namespace: validation}
spec:
  platform: WhatsApp`, []string{"spec.subjectSecretRef", "Required value"}},
		{"channel with appRef and its own secrets", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaChannel
metadata: {name: both-app, namespace: validation}
spec:
  platform: Messenger
  messenger: {pageID: "1"}
  appRef: {name: shared}` + secretRefs, []string{"spec", "set either appRef or appSecretRef and verifyTokenRef, not both"}},
		{"channel with neither appRef nor secrets", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaChannel
metadata: {name: no-app, namespace: validation}
spec:
  platform: Messenger
  messenger: {pageID: "1"}`, []string{"spec", "set either appRef or appSecretRef and verifyTokenRef"}},
		{"channel with an app secret but no verify token", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaChannel
metadata: {name: half-secrets, namespace: validation}
spec:
  platform: Messenger
  messenger: {pageID: "1"}
  appSecretRef: {name: app, key: appSecret}`, []string{"spec.verifyTokenRef", "Required value", "verifyTokenRef is required with appSecretRef"}},
		{"metaapp with one replica", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaApp
metadata: {name: one-replica}
spec:
  appID: "123"
  replicas: 1` + secretRefs, []string{"spec.replicas", "greater than or equal to 2"}},
		{"metaapp app id not numeric", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaApp
metadata: {name: bad-appid}
spec:
  appID: "my-app"` + secretRefs, []string{"spec.appID", "should match"}},
		{"metaapp without a verify token", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaApp
metadata: {name: no-token}
spec:
  appID: "123"
  appSecretRef: {name: app, key: appSecret}`, []string{"spec.verifyTokenRef", "Required value"}},
		{"metaapp name too long", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaApp
metadata: {name: ` + strings.Repeat("a", 41) + `}
spec:
  appID: "123"` + secretRefs, []string{"metadata.name must be at most 40 characters"}},
		{"deletion request unknown scope", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: DeletionRequest
metadata: {name: bad-scope, namespace: validation}
spec:` + drSpec + `
  scope: [Messages, Invoices]`, []string{"spec.scope[1]", "Unsupported value"}},
		{"deletion request unknown source", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: DeletionRequest
metadata: {name: bad-source, namespace: validation}
spec:` + drSpec + `
  source: Email`, []string{"spec.source", "Unsupported value"}},
		{"deletion request reason too long", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: DeletionRequest
metadata: {name: long-reason, namespace: validation}
spec:` + drSpec + `
  reason: "` + strings.Repeat("x", 513) + `"`, []string{"spec.reason", "Too long"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj := mustUnstructured(t, tc.yaml)
			err := k8s.Create(ctx, obj)
			if err == nil {
				_ = k8s.Delete(ctx, obj)
				t.Fatalf("the API server accepted an invalid %s", obj.GetKind())
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not contain %q", err.Error(), w)
				}
			}
		})
	}
}

// Updates that must be refused: the immutable fields.
func TestImmutableFieldsAreRefused(t *testing.T) {
	ctx := context.Background()
	const ns = "immutable"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	tests := []struct {
		name   string
		create string
		mutate func(u *unstructured.Unstructured)
		want   string
	}{
		{"deletion request spec", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: DeletionRequest
metadata: {name: frozen, namespace: immutable}
spec:
  platform: WhatsApp
  subjectSecretRef: {name: subject, key: id}`, func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, "another-subject", "spec", "subjectSecretRef", "name")
		}, "spec is immutable"},
		{"channel platform", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: MetaChannel
metadata: {name: switch-platform, namespace: immutable}
spec:
  platform: Messenger
  messenger: {pageID: "1234"}
  appSecretRef: {name: app, key: appSecret}
  verifyTokenRef: {name: app, key: verifyToken}`, func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, "Instagram", "spec", "platform")
			unstructured.RemoveNestedField(u.Object, "spec", "messenger")
			_ = unstructured.SetNestedField(u.Object, map[string]any{"accountID": "1234"}, "spec", "instagram")
		}, "platform is immutable"},
		{"tenant storage backend", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: Tenant
metadata: {name: switch-backend}
spec:
  state: Deactivated`, func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, "PostgreSQL", "spec", "storage", "backend")
		}, "storage.backend is immutable"},
		{"tenant namespace", `
apiVersion: platform.omniflowcrm.com/v1alpha1
kind: Tenant
metadata: {name: move-namespace}
spec:
  state: Deactivated
  namespace: first-home`, func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, "second-home", "spec", "namespace")
		}, "namespace is immutable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj := mustUnstructured(t, tc.create)
			if err := k8s.Create(ctx, obj); err != nil {
				t.Fatalf("create: %v", err)
			}
			t.Cleanup(func() { _ = k8s.Delete(ctx, obj) })
			// A merge patch without resourceVersion: the operator may write
			// status meanwhile, and a conflict is not what is tested here.
			patch := client.MergeFrom(obj.DeepCopy())
			tc.mutate(obj)
			err := k8s.Patch(ctx, obj, patch)
			if err == nil {
				t.Fatalf("the API server accepted a change of an immutable field")
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want Invalid mentioning %q, got %v", tc.want, err)
			}
		})
	}
}

func mustUnstructured(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatalf("bad test YAML: %v", err)
	}
	return &unstructured.Unstructured{Object: m}
}
