// Package pgtest gives tests a real PostgreSQL server: the one named by
// OMNIFLOW_TEST_POSTGRES_DSN (`make test` sets it to the private server
// hack/setup-postgres.sh starts), and a fresh database on it per test.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DSNEnv names the server the tests run against. A developer with a server of their own
// sets it and skips the script. Tests need a role that may create and drop databases.
const DSNEnv = "OMNIFLOW_TEST_POSTGRES_DSN"

// CheckServer is for TestMain: it says how to get a server when none is named or the
// named one cannot be reached. Packages fail (never skip) without one, as the envtest
// suites do without KUBEBUILDER_ASSETS: a backend whose tests quietly skip is a backend
// nobody tests.
func CheckServer() error {
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		return fmt.Errorf("%s is not set: the PostgreSQL store is tested against a real server. Run the tests with "+
			"`make test`, which starts one, or export %s=$(hack/setup-postgres.sh) (or the DSN of a server of your own "+
			"whose role may create databases)", DSNEnv, DSNEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err == nil {
		err = conn.Ping(ctx)
		_ = conn.Close(ctx)
	}
	if err != nil {
		return fmt.Errorf("cannot reach the PostgreSQL server named by %s: %w\n"+
			"hack/setup-postgres.sh starts the tests' own server and prints its DSN", DSNEnv, err)
	}
	return nil
}

// ServerDSN is the test server's DSN.
func ServerDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		t.Fatalf("%s is not set", DSNEnv)
	}
	return dsn
}

// WithDatabase returns dsn naming database name instead of its own.
func WithDatabase(t testing.TB, dsn, name string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("parse %s: %v", DSNEnv, err)
		}
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name // keyword/value form: the last setting wins
}

// WithOption returns dsn with a server option (as libpq's "options" passes it).
func WithOption(t testing.TB, dsn, option string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("parse %s: %v", DSNEnv, err)
		}
		q := u.Query()
		q.Set("options", strings.TrimSpace(q.Get("options")+" "+option))
		// pgx reads "+" in a URL's query as itself, not as a space.
		u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
		return u.String()
	}
	return dsn + " options='" + option + "'"
}

// FreshDatabase creates an empty database for one test, dropped when the test ends, and
// returns its DSN.
func FreshDatabase(t testing.TB) string {
	t.Helper()
	admin := ServerDSN(t)
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	name := "omniflow_test_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to the test server (%s): %v", DSNEnv, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		// FORCE: a test that failed half-way may have left connections open.
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	return WithDatabase(t, admin, name)
}
