package postgres

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// ringData is a fresh key ring's Secret data (version 1, active).
func ringData(t testing.TB) map[string][]byte {
	t.Helper()
	data, err := datakey.NewSecretData(rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// keysOf are the store Keys of a ring's Secret data.
func keysOf(t testing.TB, data map[string][]byte) *store.Keys {
	t.Helper()
	r, err := datakey.Parse(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return store.NewKeys(datakey.Static{R: r})
}

// The conformance suites hold with encryption on: sealing and hashing change nothing
// a caller sees.
func TestConformanceEncrypted(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openDSN(t, pgtest.FreshDatabase(t), Options{Keys: keysOf(t, ringData(t))})
	})
}

// The file suite's view beneath the store opens the sealed chunks with the tenant's
// ring: it checks which contents are held, and sealed ones are held too.
func TestFilesConformanceEncrypted(t *testing.T) {
	storetest.RunFiles(t, func(t *testing.T) (store.Store, storetest.Stored) {
		dsn := pgtest.FreshDatabase(t)
		keys := keysOf(t, ringData(t))
		return openDSN(t, dsn, Options{Keys: keys}), func(t *testing.T) [][]byte { return openedBlobs(t, dsn, keys) }
	})
}

// openedBlobs is rawBlobs with every sealed chunk opened: each content's chunks under
// its address (the last one last), a temporary key's as writeChunks sealed them.
func openedBlobs(t *testing.T, dsn string, keys *store.Keys) [][]byte {
	t.Helper()
	sl, err := keys.Sealing()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx) //nolint:errcheck // a test's connection
	rows, err := conn.Query(ctx, `SELECT sha256, seq, data, seq = max(seq) OVER (PARTITION BY sha256) FROM blobs ORDER BY sha256, seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][]byte
	last := ""
	for rows.Next() {
		var addr string
		var seq int
		var data []byte
		var final bool
		if err := rows.Scan(&addr, &seq, &data, &final); err != nil {
			t.Fatal(err)
		}
		if !store.IsHashedID(addr) && !strings.HasPrefix(addr, "tmp-") {
			t.Errorf("content address %q is not a keyed hash", addr)
		}
		if strings.HasPrefix(addr, "tmp-") {
			final = false
		}
		plain, err := sl.OpenBytes(data, addr, seq, final)
		if err != nil {
			t.Fatalf("open chunk %d of %s: %v", seq, addr, err)
		}
		if addr != last || out == nil {
			out = append(out, nil)
			last = addr
		}
		out[len(out)-1] = append(out[len(out)-1], plain...)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
