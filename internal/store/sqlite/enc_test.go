package sqlite

import (
	"bytes"
	"database/sql"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// encBackend is the SQLite store for the encryption suite: a location is a data
// directory, its bytes at rest the database, its WAL and the files directory.
func encBackend() storetest.EncBackend {
	return storetest.EncBackend{
		New: func(t *testing.T) string { return t.TempDir() },
		Open: func(t *testing.T, dir string, keys *store.Keys) store.Store {
			s, err := Open(dir, Options{Keys: keys})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Raw: func(t *testing.T, dir string) []byte {
			var out []byte
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				b, err := os.ReadFile(p)
				out = append(out, b...)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			return out
		},
		Copy: func(t *testing.T, dir string) string {
			dst := t.TempDir()
			// The database, its WAL (without the shared-memory index, which SQLite
			// rebuilds from the WAL) and the stored files: a snapshot of the volume.
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(dir, p)
				if d.IsDir() {
					return os.MkdirAll(filepath.Join(dst, rel), 0o700)
				}
				if filepath.Ext(p) == "-shm" || filepath.Base(p) == FileName+"-shm" {
					return nil
				}
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
			})
			if err != nil {
				t.Fatal(err)
			}
			return dst
		},
		Swap: func(t *testing.T, dir, table string) {
			db, err := sql.Open("sqlite", dsn(filepath.Join(dir, FileName), false))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			res, err := db.Exec(`UPDATE ` + table + ` SET doc = (SELECT doc FROM ` + table + ` ORDER BY id LIMIT 1)
				WHERE id = (SELECT id FROM ` + table + ` ORDER BY id DESC LIMIT 1)`)
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("swap %s: %d rows changed", table, n)
			}
		},
	}
}

func TestEncryption(t *testing.T) {
	storetest.RunEncryption(t, encBackend())
}

// The conformance suites again, with every record sealed and every identifier hashed.
func TestConformanceEncrypted(t *testing.T) {
	for _, o := range []Options{{}, {EraseBatch: 1}} {
		t.Run(fmt.Sprintf("EraseBatch=%d", o.EraseBatch), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				o := o
				o.Keys = storetest.NewKeys(t)
				s, err := Open(t.TempDir(), o)
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}

// The file suite reads every file beneath the store opened with the ring: a sealed
// blob counts as its clear bytes, anything else (a temporary file) as it is.
func TestFilesConformanceEncrypted(t *testing.T) {
	storetest.RunFiles(t, func(t *testing.T) (store.Store, storetest.Stored) {
		dir := t.TempDir()
		keys := storetest.NewKeys(t)
		s := openFiles(t, dir, Options{Keys: keys, EraseBatch: 1})
		return s, func(t *testing.T) [][]byte {
			sl, err := keys.Sealing()
			if err != nil {
				t.Fatal(err)
			}
			var out [][]byte
			for _, b := range filesIn(t, dir) {
				out = append(out, openedBlob(t, sl, b))
			}
			return out
		}
	})
}

// openedBlob is b's clear bytes if b is a sealed blob, else b.
func openedBlob(t *testing.T, sl store.Sealing, b []byte) []byte {
	t.Helper()
	if !bytes.HasPrefix(b, []byte(blobMagic)) {
		return b
	}
	p := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := openBlobOf(p, sl, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	clear, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("open a stored blob: %v", err)
	}
	return clear
}
