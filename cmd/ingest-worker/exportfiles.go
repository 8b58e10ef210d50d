package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// fileWriter writes the bytes of the fetched files an export lists into a directory, as
// DIR/<storedSHA256> (docs/export-format.md): the name the file record carries, one file
// per content however many records share it.
type fileWriter struct {
	dir  string
	keys map[string]store.FileKey // content address -> one record carrying it
	list []string                 // content addresses, in export order
}

func newFileWriter(dir string) (*fileWriter, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--files: %w", err)
	}
	return &fileWriter{dir: dir, keys: map[string]store.FileKey{}}, nil
}

// note remembers a file record's bytes if it lists fetched ones. The bytes are written
// after the export (write): the records come from one snapshot, read on one connection.
func (w *fileWriter) note(r store.Record) error {
	if r.Kind != store.KindFile {
		return nil
	}
	var f store.FileRecord
	if err := r.Decode(&f); err != nil {
		return err
	}
	if f.State != store.FileFetched || f.StoredSHA256 == "" {
		return nil
	}
	if _, ok := w.keys[f.StoredSHA256]; !ok {
		w.keys[f.StoredSHA256] = store.FileKey{Platform: f.Platform, MessageID: f.MessageID, Index: f.Index}
		w.list = append(w.list, f.StoredSHA256)
	}
	return nil
}

// write copies every noted content into the directory. A record erased since the
// export's snapshot is skipped: its bytes are gone, as they should be.
func (w *fileWriter) write(ctx context.Context, st store.FileStore) error {
	for _, sum := range w.list {
		rc, err := st.OpenFile(ctx, w.keys[sum])
		if errors.Is(err, store.ErrFileGone) {
			continue
		}
		if err != nil {
			return fmt.Errorf("--files: %w", err)
		}
		err = w.copyVerified(sum, rc)
		_ = rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// copyVerified writes r to DIR/sum through a temporary name, and only if its bytes hash
// to sum: a name in the directory always holds the whole, right content.
func (w *fileWriter) copyVerified(sum string, r io.Reader) error {
	tmp, err := os.CreateTemp(w.dir, ".partial-*")
	if err != nil {
		return fmt.Errorf("--files: %w", err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // renamed on success
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), r); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("--files: copy %s: %w", sum, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("--files: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("--files: stored bytes of %s hash to %s: the store is damaged", sum, got)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(w.dir, sum)); err != nil {
		return fmt.Errorf("--files: %w", err)
	}
	return nil
}
