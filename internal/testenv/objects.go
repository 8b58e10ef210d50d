package testenv

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// WhatsAppChannel is a WhatsApp MetaChannel whose app secret and verify token
// are the keys appSecret and verifyToken of one Secret.
func WhatsAppChannel(ns, name, phoneNumberID, secret string) *platformv1.MetaChannel {
	return &platformv1.MetaChannel{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: platformv1.MetaChannelSpec{
			Platform:       platformv1.PlatformWhatsApp,
			WhatsApp:       &platformv1.WhatsAppChannel{PhoneNumberID: phoneNumberID, BusinessAccountID: "109876543210987"},
			AppSecretRef:   &platformv1.SecretKeyRef{Name: secret, Key: "appSecret"},
			VerifyTokenRef: &platformv1.SecretKeyRef{Name: secret, Key: "verifyToken"},
		},
	}
}

// Background runs run (a worker loop, for instance) until the test ends, and
// waits for it to return.
func Background(t testing.TB, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}
