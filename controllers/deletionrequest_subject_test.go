package controllers

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

func TestSubjectRefusal(t *testing.T) {
	t.Parallel()
	channels := []platformv1.MetaChannel{{
		ObjectMeta: metav1.ObjectMeta{Name: "wa"},
		Spec: platformv1.MetaChannelSpec{
			Platform:       platformv1.PlatformWhatsApp,
			AppSecretRef:   &platformv1.SecretKeyRef{Name: "meta-app", Key: "appSecret"},
			VerifyTokenRef: &platformv1.SecretKeyRef{Name: "meta-app", Key: "verifyToken"},
			AccessTokenRef: &platformv1.SecretKeyRef{Name: "graph-token", Key: "token"},
		},
	}}
	uses := platformSecretUses(channels, RouteConfig{IngressTLSSecret: "hooks-tls"})
	subject := &subjectSecret{Type: platformv1.SubjectSecretType}
	ownedBy := func(uid string) *subjectSecret {
		return &subjectSecret{Type: platformv1.SubjectSecretType, Owners: []metav1.OwnerReference{{
			APIVersion: platformv1.GroupVersion.String(), Kind: "DeletionRequest", Name: "other", UID: types.UID("u-" + uid),
		}}}
	}
	tests := []struct {
		name, secret string
		s            *subjectSecret
		wantReason   string
		wantMsg      string
	}{
		{"a subject Secret of its own", "ticket-1", subject, "", ""},
		{"owned by this request", "ticket-1", ownedBy("self"), "", ""},
		{"owned by another request", "ticket-1", ownedBy("other"), platformv1.ReasonSubjectSecretInUse, "belongs to DeletionRequest other"},
		{"missing", "ticket-1", nil, platformv1.ReasonSubjectSecretMissing, "does not exist"},
		{"key missing", "ticket-1", &subjectSecret{Type: platformv1.SubjectSecretType, KeyMissing: true}, platformv1.ReasonSubjectSecretMissing, "no value under key id"},
		{"Opaque", "ticket-1", &subjectSecret{Type: corev1.SecretTypeOpaque}, platformv1.ReasonNotASubjectSecret, "has type Opaque"},
		{"TLS", "ticket-1", &subjectSecret{Type: corev1.SecretTypeTLS}, platformv1.ReasonNotASubjectSecret, "has type kubernetes.io/tls"},
		{"the Ingress TLS Secret, even of the subject type", "hooks-tls", subject, platformv1.ReasonSubjectSecretInUse, "TLS certificate"},
		{"the Ingress TLS Secret before it exists", "hooks-tls", nil, platformv1.ReasonSubjectSecretInUse, "TLS certificate"},
		{"the PostgreSQL credentials", "omniflow-postgres", subject, platformv1.ReasonSubjectSecretInUse, "PostgreSQL credentials"},
		{"the subject key", "omniflow-subject-key", subject, platformv1.ReasonSubjectSecretInUse, "subject key"},
		{"a channel's app secret", "meta-app", subject, platformv1.ReasonSubjectSecretInUse, "MetaChannel wa"},
		{"a channel's access token", "graph-token", subject, platformv1.ReasonSubjectSecretInUse, "MetaChannel wa"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dr := &platformv1.DeletionRequest{
				ObjectMeta: metav1.ObjectMeta{Name: "ticket", UID: "u-self"},
				Spec:       platformv1.DeletionRequestSpec{SubjectSecretRef: platformv1.SecretKeyRef{Name: tc.secret, Key: "id"}},
			}
			reason, msg := subjectRefusal(dr, tc.s, uses)
			if reason != tc.wantReason || !strings.Contains(msg, tc.wantMsg) {
				t.Fatalf("subjectRefusal() = %q, %q; want %q with %q", reason, msg, tc.wantReason, tc.wantMsg)
			}
		})
	}
}

func TestPlatformSecretUsesOnlyNameTheIngressTLSSecretOfAnIngressRoute(t *testing.T) {
	t.Parallel()
	if _, ok := platformSecretUses(nil, RouteConfig{Kind: RouteHTTPRoute, IngressTLSSecret: "hooks-tls"})["hooks-tls"]; ok {
		t.Fatal("an HTTPRoute operator serves no Ingress TLS Secret")
	}
	if _, ok := platformSecretUses(nil, RouteConfig{IngressTLSSecret: "hooks-tls"})["hooks-tls"]; !ok {
		t.Fatal("the Ingress TLS Secret is the platform's")
	}
}

func TestChannelRefusal(t *testing.T) {
	t.Parallel()
	channels := []platformv1.MetaChannel{
		{ObjectMeta: metav1.ObjectMeta{Name: "wa"}, Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformWhatsApp}},
		{ObjectMeta: metav1.ObjectMeta{Name: "page"}, Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformMessenger}},
	}
	tests := []struct {
		name, channel string
		platform      platformv1.Platform
		wantMsg       string
	}{
		{"every channel", "", platformv1.PlatformWhatsApp, ""},
		{"a channel of the platform", "wa", platformv1.PlatformWhatsApp, ""},
		{"a typo", "wa2", platformv1.PlatformWhatsApp, "names no MetaChannel of this tenant"},
		{"another platform's channel", "page", platformv1.PlatformWhatsApp, "is a Messenger channel, but spec.platform is WhatsApp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dr := &platformv1.DeletionRequest{Spec: platformv1.DeletionRequestSpec{Platform: tc.platform, Channel: tc.channel}}
			reason, msg := channelRefusal(dr, channels)
			if tc.wantMsg == "" {
				if reason != "" {
					t.Fatalf("refused: %s", msg)
				}
				return
			}
			if reason != platformv1.ReasonUnknownChannel || !strings.Contains(msg, tc.wantMsg) {
				t.Fatalf("channelRefusal() = %q, %q; want UnknownChannel with %q", reason, msg, tc.wantMsg)
			}
		})
	}
}

// The outcome is counted when Ready first records it: the worker's report alone
// (phase Completed, SubjectErased) is not yet a recorded outcome.
func TestOutcome(t *testing.T) {
	t.Parallel()
	ready := func(st metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{{Type: platformv1.ConditionReady, Status: st, Reason: reason}}
	}
	erased := []metav1.Condition{{Type: platformv1.ConditionSubjectErased, Status: metav1.ConditionTrue, Reason: platformv1.ReasonCompleted}}
	tests := []struct {
		name  string
		phase platformv1.DeletionPhase
		conds []metav1.Condition
		want  string
	}{
		{"pending", platformv1.DeletionPending, ready(metav1.ConditionFalse, platformv1.ReasonPending), ""},
		{"waiting for its Secret", "", ready(metav1.ConditionFalse, platformv1.ReasonSubjectSecretMissing), ""},
		{"completed by the worker, not yet recorded", platformv1.DeletionCompleted, append(ready(metav1.ConditionFalse, platformv1.ReasonPending), erased...), ""},
		{"completed and recorded", platformv1.DeletionCompleted, ready(metav1.ConditionTrue, platformv1.ReasonCompleted), "completed"},
		{"failed by the worker, not yet recorded", platformv1.DeletionFailed, ready(metav1.ConditionFalse, platformv1.ReasonPending), ""},
		{"failed and recorded", platformv1.DeletionFailed, ready(metav1.ConditionFalse, platformv1.ReasonFailed), "failed"},
		{"refused", platformv1.DeletionRefused, ready(metav1.ConditionFalse, platformv1.ReasonNotASubjectSecret), "refused"},
		{"refused for a missing Secret", platformv1.DeletionRefused, ready(metav1.ConditionFalse, platformv1.ReasonSubjectSecretMissing), "refused"},
		{"no Ready", platformv1.DeletionCompleted, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dr := &platformv1.DeletionRequest{Status: platformv1.DeletionRequestStatus{Phase: tc.phase, Conditions: tc.conds}}
			if got := outcome(dr); got != tc.want {
				t.Fatalf("outcome() = %q, want %q", got, tc.want)
			}
		})
	}
}
