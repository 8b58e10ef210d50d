package frontdoor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/yaml"
)

// RoutesFile is the standalone routing file: the tenants behind the front door, each with
// its worker and the ids of its channels (no secrets: the front door holds none of a
// tenant's).
type RoutesFile struct {
	Tenants []Tenant `json:"tenants"`
}

// ParseRoutes decodes a routes file strictly (a misspelt key is an error, not a channel
// silently routed nowhere) and checks it as Table.Replace would.
func ParseRoutes(data []byte) ([]Tenant, error) {
	var f RoutesFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("decode routes file: %w", err)
	}
	if err := (&Table{}).Replace(f.Tenants); err != nil {
		return nil, err
	}
	return f.Tenants, nil
}

// FileSource fills a Table from a routes file, and again whenever its content changes
// (polled every Interval): no restart is needed. A file that does not parse is logged
// and the table keeps its previous routes.
type FileSource struct {
	Path     string
	Table    *Table
	Log      logr.Logger
	Interval time.Duration
	last     []byte
}

// Load reads the file once and fills the table; an error leaves the table as it was.
func (f *FileSource) Load() error {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return fmt.Errorf("read routes file: %w", err)
	}
	if f.last != nil && bytes.Equal(data, f.last) {
		return nil
	}
	tenants, err := ParseRoutes(data)
	if err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	if err := f.Table.Replace(tenants); err != nil {
		return err
	}
	f.last = data
	f.Log.Info("Routes loaded", "tenants", len(tenants))
	return nil
}

// Run reloads the file on change until ctx ends.
func (f *FileSource) Run(ctx context.Context) {
	t := time.NewTicker(f.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := f.Load(); err != nil {
				f.Log.Error(err, "Routes file not reloaded; the previous routes stay")
			}
		}
	}
}

// ReadSecretFile reads a secret mounted as a file (what: its name in errors), without
// surrounding whitespace; an empty one is an error.
func ReadSecretFile(path, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s file %s is empty", what, path)
	}
	return v, nil
}
