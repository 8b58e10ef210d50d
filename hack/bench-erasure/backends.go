package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
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
	// deletion itself took.
	erase func(context.Context) (time.Duration, error)
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
			erase: func(context.Context) (time.Duration, error) {
				if err := s.Close(); err != nil {
					return 0, err
				}
				start := time.Now()
				err := os.RemoveAll(dir) // what deleting the tenant's volume does to its files
				return time.Since(start), err
			},
		}, nil
	case "postgres":
		if c.dsn == "" {
			return nil, errors.New("no PostgreSQL server: set OMNIFLOW_TEST_POSTGRES_DSN or --postgres-dsn")
		}
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		name := "omniflow_bench_" + hex.EncodeToString(b)
		if err := admin(ctx, c.dsn, "CREATE DATABASE "+name); err != nil {
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
			erase: func(ctx context.Context) (time.Duration, error) {
				_ = s.Close()
				start := time.Now()
				err := admin(ctx, c.dsn, "DROP DATABASE "+name+" WITH (FORCE)")
				return time.Since(start), err
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
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func admin(ctx context.Context, dsn, sql string) error { return exec(ctx, dsn, sql) }

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
