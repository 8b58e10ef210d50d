package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// The demo is the README's first command: it must not rot, and what it
// prints besides its steps (the operator's log, errors only) must be empty
// of errors: a conflict or a wait is no "Reconciler error".
func TestDemoWalkThrough(t *testing.T) {
	restore := captureStderr(t)
	var out bytes.Buffer
	err := run(context.Background(), &out, os.Getenv("KUBEBUILDER_ASSETS"))
	logged := restore()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s\nlog:\n%s", err, out.String(), logged)
	}
	for _, want := range []string{
		"MetaChannel whatsapp-sales Ready; webhook URL for Meta's dashboard: https://hooks.example.com/t/acme/webhooks/meta/whatsapp-sales",
		"end-user A 3 records, end-user B 3 records",
		"DeletionRequest forget-a Completed: erased 2 messages, 1 contact",
		"export: A 0 records, B 3 records",
		"callback URL for Meta's dashboard: https://hooks.example.com/apps/shared/webhooks/meta",
		"export: globex A 2, B 0 records; initech A 0, B 2 records",
		"a MetaCallback DeletionRequest filed by each tenant's worker",
		"Status: Completed; Part 1 of 2: Completed; Part 2 of 2: Completed",
		"Tenant Erased at",
		"DeleteNamespace",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	for _, unwanted := range []string{"Reconciler error", "stacktrace", "panic"} {
		if strings.Contains(logged, unwanted) {
			t.Errorf("the demo's log shows %q:\n%s", unwanted, logged)
		}
	}
}

// captureStderr sends what is written to os.Stderr (the operator's logger
// writes there, set up when the control plane starts) to a file until
// restore, which returns it.
func captureStderr(t *testing.T) func() string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	orig := os.Stderr
	os.Stderr = f
	return func() string {
		os.Stderr = orig
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = os.Stderr.Write(b) // still shown
		return string(b)
	}
}
