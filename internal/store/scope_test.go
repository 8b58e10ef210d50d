package store

import (
	"slices"
	"testing"
)

func TestScope(t *testing.T) {
	t.Parallel()
	var zero Scope
	if !zero.Has(ScopeAll) || !slices.Equal(zero.Names(), []string{"Messages", "Contacts", "Files"}) {
		t.Fatalf("the zero scope must be every kind: %v", zero.Names())
	}
	s, err := ParseScope([]string{"Files", "Messages"})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Has(ScopeFiles) || !s.Has(ScopeMessages) || s.Has(ScopeContacts) || s.Has(ScopeAll) {
		t.Fatalf("scope %v", s.Names())
	}
	if got := s.Names(); !slices.Equal(got, []string{"Messages", "Files"}) {
		t.Fatalf("names %v, want the API's order", got)
	}
	if all, _ := ParseScope(nil); all != 0 || !all.Has(ScopeContacts) {
		t.Fatalf("no names must mean every kind, got %v", all)
	}
	if _, err := ParseScope([]string{"Everything"}); err == nil {
		t.Fatal("an unknown kind was accepted")
	}
}
