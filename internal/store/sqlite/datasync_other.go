//go:build !linux

package sqlite

import "os"

// datasync flushes f with fsync(2) where fdatasync is not used by the library either.
func datasync(f *os.File) error { return f.Sync() }
