package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
)

// tenant is one store under measurement and how to erase it whole.
type tenant struct {
	st store.Store
	// analyze refreshes the planner statistics, as the backend keeps them (SQLite:
	// PRAGMA optimize; PostgreSQL: what autovacuum's ANALYZE does, run now).
	analyze func(context.Context) error
	plans   func(context.Context) ([]store.PlanCheck, error)
	// erase closes the store and erases the tenant's data: it returns how long the
	// deletion itself took and how many bytes it deleted.
	erase func(context.Context) (time.Duration, int64, error)
}

func numCPU() int { return runtime.NumCPU() }

func open(ctx context.Context, c config, backend string) (*tenant, error) {
	switch backend {
	case "sqlite":
		dir, err := os.MkdirTemp(c.dir, "omniflow-bench-erasure.")
		if err != nil {
			return nil, err
		}
		s, err := sqlite.Open(dir, sqlite.Options{EraseBatch: c.eraseBatch})
		if err != nil {
			return nil, err
		}
		return &tenant{
			st: s, analyze: s.Optimize, plans: s.CheckPlans,
			erase: func(context.Context) (time.Duration, int64, error) {
				if err := s.Close(); err != nil {
					return 0, 0, err
				}
				size, err := dirSize(dir)
				if err != nil {
					return 0, 0, err
				}
				start := time.Now()
				err = os.RemoveAll(dir) // what deleting the tenant's volume does to its files
				return time.Since(start), size, err
			},
		}, nil
	case "postgres":
		if c.dsn == "" {
			return nil, errors.New("no PostgreSQL server: set OMNIFLOW_TEST_POSTGRES_DSN or --postgres-dsn")
		}
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		name := "omniflow_bench_" + hex.EncodeToString(b)
		if err := exec(ctx, c.dsn, "CREATE DATABASE "+name); err != nil {
			return nil, err
		}
		dsn, err := withDatabase(c.dsn, name)
		if err != nil {
			return nil, err
		}
		s, err := postgres.Open(ctx, dsn, postgres.Options{MaxConns: 8})
		if err != nil {
			return nil, err
		}
		return &tenant{
			st: s, plans: s.CheckPlans,
			analyze: func(ctx context.Context) error { return exec(ctx, dsn, "ANALYZE") },
			erase: func(ctx context.Context) (time.Duration, int64, error) {
				_ = s.Close()
				conn, err := pgx.Connect(ctx, c.dsn)
				if err != nil {
					return 0, 0, err
				}
				defer func() { _ = conn.Close(ctx) }()
				var size int64
				if err := conn.QueryRow(ctx, "SELECT pg_database_size($1)", name).Scan(&size); err != nil {
					return 0, 0, err
				}
				start := time.Now()
				_, err = conn.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
				return time.Since(start), size, err
			},
		}, nil
	}
	return nil, fmt.Errorf("unknown backend %q (sqlite, postgres)", backend)
}

func exec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }()
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase names database name in dsn (a URL or a keyword/value string).
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse dsn: %w", err)
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil // keyword/value: the last setting wins
}

// dirSize is the bytes of the files in dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	return n, err
}
