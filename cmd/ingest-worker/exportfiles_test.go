package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// export --files writes each exported fetched file's bytes once, named by the
// storedSHA256 its record carries; --subject limits it to that person's files; the
// records say each file's state.
func TestExportFiles(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	s, err := sqlite.Open(dataDir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var b meta.Batch
	for _, r := range []struct{ id, subject string }{{"m-ana-1", "ana"}, {"m-ana-2", "ana"}, {"m-bo", "bo"}, {"m-pending", "bo"}} {
		b.Messages = append(b.Messages, meta.Message{Platform: meta.WhatsApp, Channel: "c", ID: r.id, Subject: r.subject, Type: "image"})
		b.Files = append(b.Files, meta.File{Platform: meta.WhatsApp, Channel: "c", MessageID: r.id, Subject: r.subject, Kind: "image", MediaID: "x-" + r.id})
	}
	if _, err := s.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	shared, own := []byte("a picture both of ana's messages carry"), []byte("bo's own picture")
	for id, payload := range map[string][]byte{"m-ana-1": shared, "m-ana-2": shared, "m-bo": own} {
		if _, err := s.StoreFileBytes(ctx, store.FileKey{Platform: meta.WhatsApp, MessageID: id}, bytes.NewReader(payload), 1<<20, "image/png"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	all := filepath.Join(t.TempDir(), "all")
	var out bytes.Buffer
	if err := export([]string{"--data-dir", dataDir, "--files", all}, &out); err != nil {
		t.Fatal(err)
	}
	checkDir(t, all, shared, own)
	byKind, err := storetest.DecodeExportStrict(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, v := range byKind[store.KindFile] {
		f := v.(*storetest.FileLine)
		states[f.MessageID] = f.State
		if f.State == store.FileFetched && (f.MIMEType != "image/png" || f.Size == 0) {
			t.Errorf("%s: mimeType %q size %d, want the recorded type and a size", f.MessageID, f.MIMEType, f.Size)
		}
	}
	if states["m-pending"] != store.FilePending || states["m-bo"] != store.FileFetched || len(states) != 4 {
		t.Errorf("exported states %v", states)
	}

	ana := filepath.Join(t.TempDir(), "ana")
	if err := export([]string{"--data-dir", dataDir, "--subject", "ana", "--files", ana}, &out); err != nil {
		t.Fatal(err)
	}
	checkDir(t, ana, shared)
}

// checkDir checks that dir holds exactly the contents, each named by its sha256.
func checkDir(t *testing.T, dir string, contents ...[]byte) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names, want []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	for _, c := range contents {
		sum := sha256.Sum256(c)
		name := hex.EncodeToString(sum[:])
		want = append(want, name)
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, c) {
			t.Errorf("%s: %q, %v; want %q", name, got, err, c)
		}
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("%s holds %v, want %v", dir, names, want)
	}
}
