package channels

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

func waChannel(name, phone string) Channel {
	return Channel{Name: name, Platform: meta.WhatsApp, WhatsApp: &WhatsAppIDs{PhoneNumberID: ID(phone), BusinessAccountID: "109876543210987"},
		AppSecret: "s", VerifyToken: "v"}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	f, err := LoadFile("testdata/channels.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if f.Tenant != "acme" || len(f.Channels) != 3 {
		t.Fatalf("got tenant %q with %d channels", f.Tenant, len(f.Channels))
	}
	wa := f.Channels[0]
	if wa.AccountID() != "123456789012345" || wa.AppSecret != "test_app_secret_0123456789abcdef" || wa.VerifyToken != "tenant-a-verify-7f3c" ||
		wa.AccessToken != "EAAG-test-token" || wa.GraphAPIBaseURL != "http://127.0.0.1:9/graph" || string(wa.WhatsApp.BusinessAccountID) != "109876543210987" {
		t.Errorf("whatsapp channel decoded as %+v", wa)
	}
	if got := f.Channels[1].AccountID(); got != "104857600123456" {
		t.Errorf("unquoted page id decoded as %q", got)
	}
	if strings.Contains(fmt.Sprint(wa), "test_app_secret") {
		t.Error("String() prints the app secret")
	}
}

func TestParseFileRejects(t *testing.T) {
	t.Parallel()
	base := "tenant: acme\nchannels:\n- name: c\n  platform: Messenger\n  messenger: {pageID: \"1\"}\n  appSecret: s\n  verifyToken: v\n"
	cases := map[string]string{
		"misspelt key":               strings.Replace(base, "appSecret", "appSecrte", 1),
		"no app secret":              strings.Replace(base, "  appSecret: s\n", "", 1),
		"no verify token":            strings.Replace(base, "  verifyToken: v\n", "", 1),
		"unknown platform":           strings.Replace(base, "Messenger", "Telegram", 1),
		"block of other kind":        strings.Replace(base, "messenger: {pageID: \"1\"}", "instagram: {accountID: \"1\"}", 1),
		"two blocks":                 strings.Replace(base, "  appSecret", "  instagram: {accountID: \"2\"}\n  appSecret", 1),
		"bad name":                   strings.Replace(base, "name: c", "name: Bad_Name", 1),
		"float id":                   strings.Replace(base, `pageID: "1"`, "pageID: 1.5", 1),
		"no tenant":                  strings.Replace(base, "tenant: acme", "tenant: \"\"", 1),
		"duplicate name":             base + "- name: c\n  platform: Messenger\n  messenger: {pageID: \"2\"}\n  appSecret: s\n  verifyToken: v\n",
		"same page twice":            base + "- name: d\n  platform: Messenger\n  messenger: {pageID: \"1\"}\n  appSecret: s\n  verifyToken: v\n",
		"appRef with its own secret": strings.Replace(base, "  appSecret: s\n", "  appRef: shared\n  appSecret: s\n", 1),
		"whatsapp without waba":      "tenant: acme\nchannels:\n- name: w\n  platform: WhatsApp\n  whatsApp: {phoneNumberID: \"1\"}\n  appSecret: s\n  verifyToken: v\n",
	}
	if _, err := ParseFile([]byte(base)); err != nil {
		t.Fatalf("base file rejected: %v", err)
	}
	// A channel behind a MetaApp has no secrets of its own.
	viaApp := "tenant: acme\nchannels:\n- name: c\n  platform: Messenger\n  messenger: {pageID: \"1\"}\n  appRef: shared\n"
	if _, err := ParseFile([]byte(viaApp)); err != nil {
		t.Fatalf("channel with appRef rejected: %v", err)
	}
	for name, data := range cases {
		if _, err := ParseFile([]byte(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	if err := r.Upsert(waChannel("a", "111")); err != nil {
		t.Fatal(err)
	}
	if err := r.Upsert(waChannel("b", "111")); !errors.Is(err, ErrConflict) {
		t.Fatalf("second channel on the same phone number: %v", err)
	}
	if ch, ok := r.LookupByAccount(meta.WhatsApp, "111"); !ok || ch.Name != "a" {
		t.Fatalf("LookupByAccount = %v %v", ch, ok)
	}
	if _, ok := r.LookupByAccount(meta.Messenger, "111"); ok {
		t.Fatal("account ids are per platform")
	}
	// Moving a channel to another number frees the old one.
	if err := r.Upsert(waChannel("a", "222")); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.LookupByAccount(meta.WhatsApp, "111"); ok {
		t.Fatal("old account still routed after upsert")
	}
	if err := r.Upsert(waChannel("b", "111")); err != nil {
		t.Fatalf("freed account not reusable: %v", err)
	}
	// Lookup returns copies: mutating one must not change the registry.
	ch, _ := r.Lookup("a")
	ch.WhatsApp.PhoneNumberID = "999"
	if again, _ := r.Lookup("a"); again.AccountID() != "222" {
		t.Fatal("Lookup leaked internal state")
	}
	r.Delete("a")
	if _, ok := r.Lookup("a"); ok {
		t.Fatal("deleted channel still found")
	}
	if _, ok := r.LookupByAccount(meta.WhatsApp, "222"); ok {
		t.Fatal("deleted channel still routed")
	}
	// A failing Replace changes nothing.
	if err := r.Replace([]Channel{waChannel("x", "1"), waChannel("y", "1")}); err == nil {
		t.Fatal("Replace accepted a conflicting set")
	}
	if got := r.Names(); len(got) != 1 || got[0] != "b" {
		t.Fatalf("after failed Replace: %v", got)
	}
	if err := r.Replace([]Channel{waChannel("x", "1")}); err != nil {
		t.Fatal(err)
	}
	if got := r.Names(); len(got) != 1 || got[0] != "x" {
		t.Fatalf("after Replace: %v", got)
	}
}

func TestOwns(t *testing.T) {
	t.Parallel()
	wa := waChannel("w", "123")
	page := Channel{Name: "p", Platform: meta.Messenger, Messenger: &MessengerIDs{PageID: "55"}, AppSecret: "s", VerifyToken: "v"}
	cases := []struct {
		ch   Channel
		part meta.Part
		want bool
	}{
		{wa, meta.Part{Platform: meta.WhatsApp, EntryID: "109876543210987", AccountID: "123"}, true},
		{wa, meta.Part{Platform: meta.WhatsApp, EntryID: "109876543210987", AccountID: "999"}, false},
		{wa, meta.Part{Platform: meta.WhatsApp, EntryID: "109876543210987", AccountID: "109876543210987"}, true}, // account-level change
		{wa, meta.Part{Platform: meta.WhatsApp, EntryID: "777", AccountID: "777"}, false},
		{wa, meta.Part{Platform: meta.Messenger, EntryID: "123", AccountID: "123"}, false},
		{page, meta.Part{Platform: meta.Messenger, EntryID: "55", AccountID: "55"}, true},
		{page, meta.Part{Platform: meta.Messenger, EntryID: "0", AccountID: "0"}, false},
		{page, meta.Part{Platform: meta.Instagram, EntryID: "55", AccountID: "55"}, false},
	}
	for i, tc := range cases {
		if got := tc.ch.Owns(&tc.part); got != tc.want {
			t.Errorf("case %d: Owns = %v, want %v", i, got, tc.want)
		}
	}
}

// Readers and writers at once: run with -race.
func TestRegistryConcurrent(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 200 {
				name := fmt.Sprintf("c%d-%d", w, i%5)
				_ = r.Upsert(waChannel(name, fmt.Sprintf("%d%d", w, i%5)))
				if i%7 == 0 {
					r.Delete(name)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range 200 {
				if ch, ok := r.Lookup(fmt.Sprintf("c%d-%d", w, i%5)); ok && ch.AppSecret != "s" {
					t.Error("torn read")
				}
				r.LookupByAccount(meta.WhatsApp, fmt.Sprintf("%d%d", w, i%5))
			}
		}()
	}
	wg.Wait()
}

func TestFileSourceReload(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "channels.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	one := "tenant: acme\nchannels:\n- name: c1\n  platform: Messenger\n  messenger: {pageID: \"1\"}\n  appSecret: s\n  verifyToken: v\n"
	write(one)
	reg := NewRegistry()
	trigger := make(chan struct{}, 1)
	src := &FileSource{Path: path, Registry: reg, Log: logr.Discard(), Interval: 20 * time.Millisecond, Trigger: trigger}
	f, err := src.Load()
	if err != nil || f.Tenant != "acme" {
		t.Fatalf("Load: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = src.Run(ctx, nil) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; channels %v", what, reg.Names())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	write(one + "- name: c2\n  platform: Messenger\n  messenger: {pageID: \"2\"}\n  appSecret: s\n  verifyToken: v\n")
	waitFor("c2 added", func() bool { _, ok := reg.Lookup("c2"); return ok })
	write("tenant: acme\nchannels: [{name: c1, platform: Nope}]\n")
	trigger <- struct{}{}
	time.Sleep(100 * time.Millisecond)
	if _, ok := reg.Lookup("c2"); !ok {
		t.Fatal("invalid file took the channels down")
	}
	write(strings.Replace(one, "c1", "c3", 1))
	waitFor("c3 replaces c1 and c2", func() bool {
		_, ok3 := reg.Lookup("c3")
		_, ok1 := reg.Lookup("c1")
		_, ok2 := reg.Lookup("c2")
		return ok3 && !ok1 && !ok2
	})
}

// Run without a prior Load loads the file itself: a bad file is an error (there are no
// previous channels to keep), a good one is in the registry before synced is called.
func TestFileSourceRunLoadsFirst(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("tenant: acme\nchannels: [{name: c1, platform: Nope}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &FileSource{Path: bad, Registry: NewRegistry(), Log: logr.Discard()}
	if err := src.Run(ctx, func() { t.Error("synced called for a bad file") }); err == nil {
		t.Fatal("Run accepted an invalid channels file")
	}

	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("tenant: acme\nchannels:\n- name: c1\n  platform: Messenger\n  messenger: {pageID: \"1\"}\n  appSecret: s\n  verifyToken: v\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry()
	src = &FileSource{Path: good, Registry: reg, Log: logr.Discard(), Interval: time.Hour}
	synced := make(chan bool, 1)
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func() { _, ok := reg.Lookup("c1"); synced <- ok })
	}()
	select {
	case ok := <-synced:
		if !ok {
			t.Fatal("synced called before the file's channels were in the registry")
		}
	case err := <-done:
		t.Fatalf("Run returned before synced: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("synced not called")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
}
