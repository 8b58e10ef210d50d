package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// File documents stored before schema version 2 carry the media kind under "kind"; an
// export prints them with "mediaKind", so that every line has one key per name.
func TestLegacyFileDocumentsExportOneKindKey(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ kind, doc, want string }{
		"legacy file": {KindFile, `{"platform":"WhatsApp","index":0,"kind":"audio","caption":"a \"kind\": b"}`,
			`{"kind":"file","schemaVersion":4,"platform":"WhatsApp","index":0,"mediaKind":"audio","caption":"a \"kind\": b"}`},
		"current file": {KindFile, `{"platform":"WhatsApp","mediaKind":"audio"}`,
			`{"kind":"file","schemaVersion":4,"platform":"WhatsApp","mediaKind":"audio"}`},
		"nested kind stays": {KindMessage, `{"id":"m","reply":{"kind":"button"}}`,
			`{"kind":"message","schemaVersion":4,"id":"m","reply":{"kind":"button"}}`},
		"kind only in a string": {KindFile, `{"caption":"\"kind\""}`, `{"kind":"file","schemaVersion":4,"caption":"\"kind\""}`},
		"empty document":        {KindErasure, `{}`, `{"kind":"erasure","schemaVersion":4}`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := Record{Kind: tc.kind, Doc: json.RawMessage(tc.doc)}
			got, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			var v map[string]any
			if err := r.Decode(&v); err != nil {
				t.Fatal(err)
			}
			if tc.kind == KindFile && strings.Contains(tc.doc, `"audio"`) && v["mediaKind"] != "audio" {
				t.Errorf("Decode: %v", v)
			}
		})
	}
}

// Chains resolve from any of their identifiers; a chain past the bound fails rather
// than erasing part of a person.
func TestResolveIdentifiers(t *testing.T) {
	t.Parallel()
	// a→b→c, and c's contact row also holds x.
	links := map[string][]string{"a": {"a", "b"}, "b": {"a", "b", "b", "c"}, "c": {"b", "c", "x", ""}, "x": {"c", "x"}}
	lookup := func(ids []string) ([]string, error) {
		var out []string
		for _, id := range ids {
			out = append(out, links[id]...)
		}
		return out, nil
	}
	for _, first := range []string{"a", "c", "x"} {
		got, err := ResolveIdentifiers(first, lookup)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != first || len(got) != 4 || !slices.Contains(got, "a") || !slices.Contains(got, "x") {
			t.Errorf("from %s: %v", first, got)
		}
	}
	long := func(ids []string) ([]string, error) { // n links to n+1, without end
		var n int
		fmt.Sscanf(ids[0], "%d", &n)
		return []string{fmt.Sprint(n + 1)}, nil
	}
	if _, err := ResolveIdentifiers("0", long); err == nil {
		t.Fatal("an endless chain resolved")
	}
}

func TestContactAfterChange(t *testing.T) {
	t.Parallel()
	wa := func(subject, waID, userID, name, username string) meta.Contact {
		return meta.Contact{Platform: meta.WhatsApp, Channel: "c", Subject: subject, WaID: waID, UserID: userID, Name: name, Username: username}
	}
	number := &meta.IdentityChange{Platform: meta.WhatsApp, Channel: "c", Type: meta.IdentityChangedNumber, OldWaID: "1", NewWaID: "2"}
	userID := &meta.IdentityChange{Platform: meta.WhatsApp, Channel: "c", Type: meta.IdentityChangedUserID,
		OldWaID: "1", OldUserID: "US.old", NewUserID: "US.new", NewParentUserID: "US.ENT.p"}
	for name, tc := range map[string]struct {
		change       *meta.IdentityChange
		newer, older []meta.Contact
		want         meta.Contact
	}{
		"no rows yet: the new number":    {number, nil, nil, wa("2", "2", "", "", "")},
		"old row's name moves":           {number, nil, []meta.Contact{wa("1", "1", "", "Ana", "")}, wa("2", "2", "", "Ana", "")},
		"newer name wins":                {number, []meta.Contact{wa("2", "2", "", "Ana S.", "")}, []meta.Contact{wa("1", "1", "", "Ana", "ana")}, wa("2", "2", "", "Ana S.", "ana")},
		"new row's BSUID is kept":        {number, []meta.Contact{wa("US.x", "2", "US.x", "", "")}, nil, wa("US.x", "2", "US.x", "", "")},
		"old identifiers never carry on": {userID, nil, []meta.Contact{wa("US.old", "1", "US.old", "Ana", "")}, func() meta.Contact { c := wa("US.new", "", "US.new", "Ana", ""); c.ParentUserID = "US.ENT.p"; return c }()},
		"a newer row holding an old id":  {userID, []meta.Contact{wa("US.new", "1", "US.new", "", "")}, nil, func() meta.Contact { c := wa("US.new", "", "US.new", "", ""); c.ParentUserID = "US.ENT.p"; return c }()},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := ContactAfterChange(tc.change, tc.newer, tc.older); got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
