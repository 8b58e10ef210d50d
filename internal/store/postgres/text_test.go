package postgres

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func storable(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

func TestKeyText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"15555550142":  "15555550142",
		"café 😀":       "café 😀",
		"a\x00b":       "a\uffff0b",
		"a\uffff":      "a\uffffF",
		"a\xffb":       "a\uffffxffb",
		"\uffff0":      "\uffffF0",
		"\x00\xfe\x00": "\uffff0\uffffxfe\uffff0",
	} {
		if got := keyText(in); got != want {
			t.Errorf("keyText(%q) = %q, want %q", in, got, want)
		}
	}
}

// keyText is injective and its output storable: distinct identifiers stay distinct keys.
func FuzzKeyText(f *testing.F) {
	f.Add("a\x00", "a\uffff0")
	f.Add("a\xff", "a\uffffxff")
	f.Add("\uffff", "\uffffF")
	f.Fuzz(func(t *testing.T, a, b string) {
		ka, kb := keyText(a), keyText(b)
		if !storable(ka) || !storable(kb) {
			t.Fatalf("keyText(%q) = %q, keyText(%q) = %q: not storable", a, ka, b, kb)
		}
		if (a == b) != (ka == kb) {
			t.Fatalf("keyText(%q) = %q, keyText(%q) = %q", a, ka, b, kb)
		}
	})
}

func TestDocText(t *testing.T) {
	t.Parallel()
	valid := []byte(`{"a":"b\u0000c","d":"é"}`)
	if got := docText(valid); !bytes.Equal(got, valid) {
		t.Errorf("valid document changed: %s", got)
	}
	got := docText([]byte("{\"a\":\"b\x00c\xffd\"}"))
	var v map[string]string
	if !utf8.Valid(got) || bytes.IndexByte(got, 0) >= 0 || json.Unmarshal(got, &v) != nil || v["a"] != "b\x00c\ufffdd" {
		t.Errorf("docText = %q (%v)", got, v)
	}
}
