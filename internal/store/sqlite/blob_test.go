package sqlite

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// sealTo seals payload into a blob file and returns its path and the payload's digest.
func sealTo(t *testing.T, sl store.Sealing, payload []byte) (string, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "blob")
	var buf bytes.Buffer
	h := sha256.New()
	n, err := sealedBlob(&buf, bytes.NewReader(payload), sl, h)
	if err != nil || n != int64(len(payload)) {
		t.Fatalf("sealedBlob: %d, %v", n, err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, hex.EncodeToString(h.Sum(nil))
}

func readBlob(path string, sl store.Sealing, sum string) ([]byte, error) {
	r, err := openBlob(path, sl, sum)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// chunks splits a blob file into its header and its length-prefixed chunks.
func chunks(t *testing.T, b []byte) (head []byte, out [][]byte) {
	t.Helper()
	head, b = b[:len(blobMagic)+blobIDLen], b[len(blobMagic)+blobIDLen:]
	for len(b) > 0 {
		n := 4 + int(binary.BigEndian.Uint32(b))
		out, b = append(out, b[:n]), b[n:]
	}
	return head, out
}

// Sealed file bytes read back whole for every size around the chunk boundaries; a
// blob cut at a chunk boundary, with chunks reordered, or not matching its record's
// digest does not read.
func TestSealedBlobChunks(t *testing.T) {
	t.Parallel()
	sl, err := storetest.NewKeys(t).Sealing()
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 1, blobChunk - 1, blobChunk, blobChunk + 1, 3 * blobChunk} {
		payload := bytes.Repeat([]byte{byte(size), 'x', 'y'}, size/3+1)[:size]
		path, sum := sealTo(t, sl, payload)
		raw, _ := os.ReadFile(path)
		if size > 16 && bytes.Contains(raw, payload[:16]) {
			t.Errorf("size %d: the blob holds its bytes in clear", size)
		}
		got, err := readBlob(path, sl, sum)
		if err != nil || !bytes.Equal(got, payload) {
			t.Errorf("size %d: read %d bytes, %v", size, len(got), err)
		}
		if v, err := blobVersion(path); err != nil || v != 1 {
			t.Errorf("size %d: blobVersion = %d, %v", size, v, err)
		}
	}
	path, sum := sealTo(t, sl, bytes.Repeat([]byte("abcd"), blobChunk+3))
	raw, _ := os.ReadFile(path)
	head, cs := chunks(t, raw)
	if len(cs) != 5 {
		t.Fatalf("%d chunks, want 5", len(cs))
	}
	bad := map[string][]byte{
		"cut after a chunk": bytes.Join(append([][]byte{head}, cs[:3]...), nil),
		"chunks reordered":  bytes.Join([][]byte{head, cs[1], cs[0], cs[2], cs[3], cs[4]}, nil),
		"chunk dropped":     bytes.Join([][]byte{head, cs[0], cs[2], cs[3], cs[4]}, nil),
	}
	for name, b := range bad {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readBlob(path, sl, sum); !errors.Is(err, datakey.ErrAuthentication) {
			t.Errorf("%s: %v, want ErrAuthentication", name, err)
		}
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	other := sha256.Sum256([]byte("other"))
	if _, err := readBlob(path, sl, hex.EncodeToString(other[:])); !errors.Is(err, store.ErrChecksum) {
		t.Errorf("a blob under another record's digest: %v, want ErrChecksum", err)
	}
	if _, err := readBlob(path, store.Sealing{}, sum); err == nil {
		t.Error("a sealed blob read without a ring")
	}
}
