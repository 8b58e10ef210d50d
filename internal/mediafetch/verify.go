package mediafetch

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
)

var (
	errChecksum = errors.New("bytes do not match the sha256 Meta declared")
	errTooLarge = errors.New("file larger than the limit")
)

// verifier streams a download into the store: it hashes what passes, never reads more
// than max+1 bytes from the network (so a too-large file is stopped at the limit, not
// after), and at the end of the body turns a checksum mismatch into a read error, so
// that StoreFileBytes fails before it commits anything and no byte of a wrong file is
// kept.
type verifier struct {
	r    io.Reader
	h    hash.Hash
	want []byte // nil: nothing declared, nothing checked
	max  int64
	n    int64
	// What went wrong, for the caller to tell apart from the store's own errors.
	tooLarge, mismatch bool
	netErr             error
}

func newVerifier(r io.Reader, want []byte, limit int64) *verifier {
	return &verifier{r: r, h: sha256.New(), want: want, max: limit}
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.tooLarge {
		return 0, errTooLarge
	}
	if room := v.max + 1 - v.n; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	v.h.Write(p[:n])
	switch {
	case v.n > v.max:
		v.tooLarge = true
		return n, errTooLarge
	case errors.Is(err, io.EOF):
		if v.want != nil && !bytes.Equal(v.h.Sum(nil), v.want) {
			v.mismatch = true
			return n, errChecksum
		}
	case err != nil:
		v.netErr = err
	}
	return n, err
}
