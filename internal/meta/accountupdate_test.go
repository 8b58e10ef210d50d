package meta

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestAccountRemovalFixtures(t *testing.T) {
	for file, want := range map[string]struct {
		event string
		waba  string
	}{
		"whatsapp-account-update-account-deleted.json":         {EventAccountDeleted, "109876543210987"},
		"whatsapp-account-update-partner-app-uninstalled.json": {EventPartnerAppUninstalled, "109876543210987"},
	} {
		body, err := os.ReadFile(filepath.Join("testdata", "fixtures", file))
		if err != nil {
			t.Fatal(err)
		}
		parts, err := Split(body)
		if err != nil || len(parts) != 1 {
			t.Fatalf("%s: %d parts, %v", file, len(parts), err)
		}
		ev, ids, ok := AccountRemoval(&parts[0])
		if !ok || ev != want.event || !slices.Contains(ids, want.waba) {
			t.Fatalf("%s: %q %v %v, want %s naming %s", file, ev, ids, ok, want.event, want.waba)
		}
	}
	body, err := os.ReadFile(filepath.Join("testdata", "fixtures", "whatsapp-text.json"))
	if err != nil {
		t.Fatal(err)
	}
	parts, err := Split(body)
	if err != nil {
		t.Fatal(err)
	}
	for i := range parts {
		if _, _, ok := AccountRemoval(&parts[i]); ok {
			t.Fatal("a messages change read as an account removal")
		}
	}
	other := Part{Platform: WhatsApp, Field: "account_update", EntryID: "1", Raw: []byte(`{"event":"ACCOUNT_VIOLATION"}`)}
	if _, _, ok := AccountRemoval(&other); ok {
		t.Fatal("an operational alert read as an account removal")
	}
}
