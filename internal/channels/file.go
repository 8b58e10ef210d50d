package channels

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/yaml"
)

// File is the standalone channels file: the tenant and its channels, secrets inline.
type File struct {
	Tenant   string    `json:"tenant"`
	Channels []Channel `json:"channels"`
}

// ParseFile decodes and validates a channels file. Unknown keys are errors: a misspelt
// "appSecret" must not silently yield a channel that cannot verify anything.
func ParseFile(data []byte) (*File, error) {
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("decode channels file: %w", err)
	}
	if !nameRE.MatchString(f.Tenant) {
		return nil, fmt.Errorf("tenant %q: want a DNS label", f.Tenant)
	}
	// Validate the set the same way the registry will, so errors surface at load time.
	if err := NewRegistry().Replace(f.Channels); err != nil {
		return nil, err
	}
	return &f, nil
}

// LoadFile reads and parses a channels file.
func LoadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read channels file: %w", err)
	}
	f, err := ParseFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// FileSource feeds a Registry from a channels file and reloads it without a restart: when
// its content changes (polled, which also catches Kubernetes' ConfigMap/Secret symlink
// swaps that inotify watchers miss) or when Trigger fires (SIGHUP).
type FileSource struct {
	Path     string
	Registry *Registry
	Log      logr.Logger
	Interval time.Duration
	Trigger  <-chan struct{}

	lastSum [sha256.Size]byte
	loaded  bool
}

// Load reads the file once and replaces the registry's channels. It returns the file so
// the caller can learn the tenant.
func (s *FileSource) Load() (*File, error) {
	data, err := os.ReadFile(s.Path)
	if err != nil {
		return nil, fmt.Errorf("read channels file: %w", err)
	}
	f, err := ParseFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Path, err)
	}
	if err := s.Registry.Replace(f.Channels); err != nil {
		return nil, fmt.Errorf("%s: %w", s.Path, err)
	}
	s.lastSum = sha256.Sum256(data)
	s.loaded = true
	return f, nil
}

// Run reloads on change until ctx ends. A bad file is logged and the previous channels stay.
// It loads the file first unless Load already did (a bad file then is an error: there are
// no previous channels to keep), and calls synced, if not nil, once the registry holds the
// file's channels. It has the shape of the worker's channel sources (ingest.ChannelSource).
func (s *FileSource) Run(ctx context.Context, synced func()) error {
	if !s.loaded {
		if _, err := s.Load(); err != nil {
			return err
		}
	}
	if synced != nil {
		synced()
	}
	interval := s.Interval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		force := false
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-s.Trigger:
			force = true
		}
		data, err := os.ReadFile(s.Path)
		if err != nil {
			s.Log.Error(err, "Channels file unreadable, keeping current channels")
			continue
		}
		sum := sha256.Sum256(data)
		if !force && bytes.Equal(sum[:], s.lastSum[:]) {
			continue
		}
		if _, err := s.Load(); err != nil {
			s.Log.Error(err, "Channels file invalid, keeping current channels")
			continue
		}
		s.Log.Info("Channels reloaded", "channels", len(s.Registry.Names()))
	}
}
