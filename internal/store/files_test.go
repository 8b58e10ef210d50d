package store

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

func TestInitialFileState(t *testing.T) {
	for name, tc := range map[string]struct {
		f    meta.File
		want string
	}{
		"WhatsApp media id":       {meta.File{MediaID: "1"}, FilePending},
		"Messenger URL":           {meta.File{URL: "https://cdn/x"}, FilePending},
		"story mention (noFetch)": {meta.File{URL: "https://cdn/x", NoFetch: true}, FileMetadataOnly},
		"nothing to fetch":        {meta.File{Kind: "sticker"}, FileMetadataOnly},
	} {
		if got := InitialFileState(&tc.f); got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}

func TestChecksumMatches(t *testing.T) {
	sum := sha256.Sum256([]byte("bytes"))
	other := sha256.Sum256([]byte("other"))
	for name, tc := range map[string]struct {
		declared string
		want     bool
	}{
		"base64 (WhatsApp)": {base64.StdEncoding.EncodeToString(sum[:]), true},
		"base64, other":     {base64.StdEncoding.EncodeToString(other[:]), false},
		"hex":               {hex.EncodeToString(sum[:]), true},
		"hex, other":        {hex.EncodeToString(other[:]), false},
		"url-safe base64":   {base64.RawURLEncoding.EncodeToString(sum[:]), true},
		"none declared":     {"", true},
		"unreadable":        {"not a digest", true},
	} {
		if got := ChecksumMatches(tc.declared, sum[:]); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}

func TestFileDoc(t *testing.T) {
	doc := []byte(`{"platform":"WhatsApp","messageID":"m","index":0,"mediaKind":"image","mimeType":"image/jpeg"}`)
	for name, tc := range map[string]struct {
		mime string
		st   FileState
		want string
	}{
		"pending, declared type kept": {"", FileState{State: FilePending},
			`{"platform":"WhatsApp","messageID":"m","index":0,"mediaKind":"image","mimeType":"image/jpeg","state":"pending"}`},
		"fetched, recorded type": {"image/png", FileState{State: FileFetched, StoredSHA256: "ab", Size: 3},
			`{"platform":"WhatsApp","channel":"","messageID":"m","index":0,"subject":"","mediaKind":"image","mimeType":"image/png","state":"fetched","storedSHA256":"ab","size":3}`},
		"failed": {"image/jpeg", FileState{State: FileFailed, FailReason: FailNotFound},
			`{"platform":"WhatsApp","messageID":"m","index":0,"mediaKind":"image","mimeType":"image/jpeg","state":"failed","failReason":"NotFound"}`},
	} {
		got, err := FileDoc(doc, tc.mime, tc.st)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s:\n got %s (%v)\nwant %s", name, got, err, tc.want)
		}
	}
	if got, err := FileDoc([]byte(`{}`), "", FileState{State: FileMetadataOnly}); err != nil || string(got) != `{"state":"metadataOnly"}` {
		t.Errorf("empty document: %s, %v", got, err)
	}
}
