package sqlite

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Sealed file bytes. With Keys a file's bytes are stored under the content address
// store.Sealing.ID(store.PurposeContent, <hex SHA-256 of the bytes>), so that equal
// files are still stored once per tenant and no clear digest is on disk, in this
// format:
//
//	"OFB1" | 16 random bytes (the blob's id) | chunks
//
// each chunk a 4-byte big-endian length and a store.Sealing.SealBytes of up to
// blobChunk bytes, whose identity is the blob's id, its index and whether it is the
// last. The id is random rather than the content address because the address is
// known only once the last byte was read, and the bytes are sealed as they stream in
// (a clear copy never touches the disk, and a file is never held whole in memory).
// What binds a blob to its record is the record's sealed digest (files.content):
// reading a file checks the bytes against it.

const (
	blobMagic = "OFB1"
	blobIDLen = 16
	blobChunk = 64 << 10
)

// sealedBlob writes r to w sealed, hashing the clear bytes into h; it returns how
// many clear bytes it read.
func sealedBlob(w io.Writer, r io.Reader, sl store.Sealing, h hash.Hash) (int64, error) {
	var id [blobIDLen]byte
	if _, err := rand.Read(id[:]); err != nil {
		return 0, fmt.Errorf("blob id: %w", err)
	}
	if _, err := w.Write(append([]byte(blobMagic), id[:]...)); err != nil {
		return 0, err
	}
	addr := hex.EncodeToString(id[:])
	cur, next := make([]byte, blobChunk), make([]byte, blobChunk)
	n, err := io.ReadFull(r, cur)
	var size int64
	for i := 0; ; i++ {
		last, m := false, 0
		switch {
		case err == nil: // a full chunk: is there more?
			m, err = io.ReadFull(r, next)
			last = m == 0 && errors.Is(err, io.EOF)
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return size, err
			}
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			last = true
		default:
			return size, err
		}
		h.Write(cur[:n])
		size += int64(n)
		sealed, serr := sl.SealBytes(cur[:n], addr, i, last)
		if serr != nil {
			return size, serr
		}
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(sealed))) //nolint:gosec // at most blobChunk+datakey.Overhead
		if _, werr := w.Write(append(l[:], sealed...)); werr != nil {
			return size, werr
		}
		if last {
			return size, nil
		}
		cur, next, n = next, cur, m
	}
}

// blobReader streams a sealed blob's clear bytes and, at the end, checks them
// against the digest its record holds.
type blobReader struct {
	f    *os.File
	br   *bufio.Reader
	sl   store.Sealing
	addr string
	i    int
	buf  []byte
	done bool
	h    hash.Hash
	want []byte
}

// openBlob opens a sealed blob whose clear bytes must have the SHA-256 wantHex.
func openBlob(path string, sl store.Sealing, wantHex string) (*blobReader, error) {
	want, err := hex.DecodeString(wantHex)
	if err != nil || len(want) != sha256.Size {
		return nil, errors.New("open file: the record's digest is unreadable")
	}
	return openBlobOf(path, sl, want)
}

// openBlobOf opens a sealed blob; a nil want checks no digest (tests reading every
// blob beneath the store).
func openBlobOf(path string, sl store.Sealing, want []byte) (*blobReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open file: %w", err)
	}
	b := &blobReader{f: f, br: bufio.NewReaderSize(f, blobChunk+datakey.Overhead+4), sl: sl, h: sha256.New(), want: want}
	var head [len(blobMagic) + blobIDLen]byte
	if _, err := io.ReadFull(b.br, head[:]); err != nil || string(head[:len(blobMagic)]) != blobMagic {
		_ = f.Close()
		return nil, fmt.Errorf("open file: not a sealed blob: %w", datakey.ErrFormat)
	}
	b.addr = hex.EncodeToString(head[len(blobMagic):])
	return b, nil
}

// nextChunk reads and opens the next chunk; the last one is the one the file ends
// with, so a file cut short does not open.
func (b *blobReader) nextChunk() ([]byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(b.br, l[:]); err != nil {
		return nil, fmt.Errorf("read file: chunk %d: %w", b.i, io.ErrUnexpectedEOF)
	}
	sealed := make([]byte, binary.BigEndian.Uint32(l[:]))
	if _, err := io.ReadFull(b.br, sealed); err != nil {
		return nil, fmt.Errorf("read file: chunk %d: %w", b.i, io.ErrUnexpectedEOF)
	}
	_, peek := b.br.Peek(1)
	last := errors.Is(peek, io.EOF)
	out, err := b.sl.OpenBytes(sealed, b.addr, b.i, last)
	if err != nil {
		return nil, err
	}
	b.i++
	b.done = last
	return out, nil
}

func (b *blobReader) Read(p []byte) (int, error) {
	for len(b.buf) == 0 {
		if b.done {
			if b.want != nil && !bytes.Equal(b.h.Sum(nil), b.want) {
				return 0, fmt.Errorf("read file: %w", store.ErrChecksum)
			}
			return 0, io.EOF
		}
		c, err := b.nextChunk()
		if err != nil {
			return 0, err
		}
		b.h.Write(c)
		b.buf = c
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

func (b *blobReader) Close() error { return b.f.Close() }

// blobVersion is the key version a sealed blob's first chunk is sealed under.
func blobVersion(path string) (datakey.Version, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close() //nolint:errcheck // read-only
	head := make([]byte, len(blobMagic)+blobIDLen+4+datakey.Overhead)
	if _, err := io.ReadFull(f, head); err != nil {
		return 0, fmt.Errorf("read blob: %w", datakey.ErrFormat)
	}
	return datakey.VersionOf(head[len(blobMagic)+blobIDLen+4:])
}

// writeBlobFrom seals r into a new temporary file in the files directory, fsynced,
// and returns its path; the bytes count toward the transaction's reseal budget.
func (t *txn) writeBlobFrom(r io.Reader) (string, error) {
	tmp, f, err := t.s.createTemp()
	if err != nil {
		return "", err
	}
	var n int64
	if n, err = sealedBlob(f, r, t.sl, sha256.New()); err == nil {
		err = f.Sync()
	}
	t.resealedBytes += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("seal file: %w", err)
	}
	return tmp, nil
}

// placeBlob renames a temporary file to the final name of addr and makes it durable.
func (s *Store) placeBlob(tmp, addr string) error {
	final := blobPath(s.dir, addr)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return syncDir(filepath.Dir(final))
}

// resealBlob brings a file row's stored bytes and its digest to the active version:
// bytes stored in clear are sealed under their keyed content address (the clear copy
// goes once no record names it, as erased bytes do); sealed bytes under an older
// version are sealed again in place. It returns the row's new address and content.
func (t *txn) resealBlob(r storedRow, oldKey, newKey []string) (addr, content string, changed bool, err error) {
	s, sl := t.s, t.sl
	if !store.IsHashedID(r.addr) {
		sum := r.addr
		addr = sl.ID(store.PurposeContent, sum)
		if _, statErr := os.Stat(blobPath(s.dir, addr)); statErr != nil {
			clearFile, err := os.Open(blobPath(s.dir, sum))
			if err == nil {
				tmp, werr := t.writeBlobFrom(clearFile)
				_ = clearFile.Close()
				if werr != nil {
					return "", "", false, werr
				}
				if err := s.placeBlob(tmp, addr); err != nil {
					_ = os.Remove(tmp)
					return "", "", false, fmt.Errorf("seal file: %w", err)
				}
				changed = true
			}
			// Bytes already missing stay missing: the record keeps its place.
		}
		t.unref = append(t.unref, sum)
		content, err = sl.SealDoc([]byte(sum), fileContentIdentity, newKey...)
		return addr, content, changed, err
	}
	sum, err := sl.OpenDoc(r.content, fileContentIdentity, oldKey...)
	if err != nil {
		return "", "", false, err
	}
	content = r.content
	if v, verr := store.DocVersion(r.content); verr != nil || v != sl.ActiveVersion() || !slices.Equal(oldKey, newKey) {
		if content, err = sl.SealDoc(sum, fileContentIdentity, newKey...); err != nil {
			return "", "", false, err
		}
	}
	path := blobPath(s.dir, r.addr)
	if v, verr := blobVersion(path); verr == nil && v != sl.ActiveVersion() {
		in, err := openBlob(path, sl, string(sum))
		if err != nil {
			return "", "", false, err
		}
		tmp, werr := t.writeBlobFrom(in)
		_ = in.Close()
		if werr != nil {
			return "", "", false, werr
		}
		// Replaced whole: a reader holding the old file reads it to its end.
		if err := s.placeBlob(tmp, r.addr); err != nil {
			_ = os.Remove(tmp)
			return "", "", false, fmt.Errorf("seal file: %w", err)
		}
		changed = true
	}
	return r.addr, content, changed, nil
}
