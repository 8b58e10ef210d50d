package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// The demo is the README's first command: it must not rot.
func TestDemoWalkThrough(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, os.Getenv("KUBEBUILDER_ASSETS")); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"MetaChannel whatsapp-sales Ready; webhook URL for Meta's dashboard: https://hooks.example.com/t/acme/webhooks/meta/whatsapp-sales",
		"end-user A 3 records, end-user B 3 records",
		"DeletionRequest forget-a Completed: erased 2 messages, 1 contact",
		"export: A 0 records, B 3 records",
		"Tenant Erased at",
		"DeleteNamespace",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
