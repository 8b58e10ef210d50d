package datakey

import (
	"context"
	"errors"
)

// Source is where a worker gets its tenant's ring: Ring is the ring in force now, and
// Run keeps it current (a rotation is in force within seconds) until ctx ends. The
// store layer asks Ring for every batch it seals or opens, so that a rotation needs no
// restart.
//
// The default Source is the tenant's key Secret, watched by name
// (internal/clusterkey). A KMS fits behind the same interface: its Source reads the
// same Secret and parses it with a Wrapper's Unwrap, so that the Secret only holds keys
// wrapped by a key-encryption key that never leaves the KMS (envelope encryption), and
// destroying either the Secret or the KMS key puts the data beyond use.
type Source interface {
	// Ring is the ring in force, or ErrNotLoaded (wrapped) before the first load,
	// or an error saying why the key cannot be had (the Secret is gone, say).
	Ring() (*Ring, error)
	// Run loads the ring and follows its changes until ctx ends.
	Run(ctx context.Context) error
}

// ErrNotLoaded: the Source has not loaded a ring yet.
var ErrNotLoaded = errors.New("datakey: key ring not loaded yet")

// Wrapper wraps and unwraps data keys with a key-encryption key held by a KMS: the
// place for a KMS provider (none is built yet; the Secret holding the keys themselves
// is the default). Its Wrap is what NewSecretData and Rotate take, its Unwrap what
// Parse takes.
type Wrapper interface {
	Wrap(ctx context.Context, key []byte) ([]byte, error)
	Unwrap(ctx context.Context, wrapped []byte) ([]byte, error)
}

// Static is a Source that holds one ring: standalone workers, tests and benchmarks.
type Static struct{ R *Ring }

// Ring returns the ring.
func (s Static) Ring() (*Ring, error) {
	if s.R == nil {
		return nil, ErrNotLoaded
	}
	return s.R, nil
}

// Run does nothing: the ring never changes.
func (Static) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
