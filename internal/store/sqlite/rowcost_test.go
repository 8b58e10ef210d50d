package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// BenchmarkRowCost prices one stored message in SQLite itself, without the worker: the
// CPU per row of inserting the load generator's rows (10 messages per delivery sharing
// an id prefix, senders from a pool of 5000, 480-byte documents) in transactions of 200
// rows, with the store's durability settings (WAL, synchronous=NORMAL: no sync per commit), for
//
//   - table: a rowid table and nothing else, the floor of any row-per-message design;
//   - unique: the same plus the unique (platform, message_id) index that absorbs Meta's
//     redeliveries;
//   - store: the store's own messages table, indexes (retention's partial index on the
//     message's timestamp included) and insert statement.
//
// It is how docs/ingest-worker.md shows that a batch-10 ratio of 0.5 is out of reach for
// a row per message on this machine: run it with
//
//	go test -run '^$' -bench RowCost -benchtime 200000x ./internal/store/sqlite
//
// and compare cpu-us/row times 10 with the budget loadgen prints for batch 10.
func BenchmarkRowCost(b *testing.B) {
	const table = `CREATE TABLE messages (id INTEGER PRIMARY KEY, platform TEXT NOT NULL, message_id TEXT NOT NULL,
		channel TEXT NOT NULL, subject TEXT NOT NULL, subject_alt TEXT, ts INTEGER, doc TEXT NOT NULL)`
	plain := `INSERT INTO messages(platform, message_id, channel, subject, subject_alt, ts, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)`
	for _, v := range []struct {
		name, schema, insert string
		extra                []any // arguments past the plain insert's seven
	}{
		{"table", table, plain, nil},
		{"unique", table + `; CREATE UNIQUE INDEX messages_message_id ON messages(platform, message_id)`,
			plain + ` ON CONFLICT(platform, message_id) DO NOTHING`, nil},
		{"store", schema + store.RetentionIndexes, statements["insertMessageNoTombstones"], []any{nil}},
	} {
		b.Run(v.name, func(b *testing.B) {
			db, err := sql.Open("sqlite", dsn(filepath.Join(b.TempDir(), "cost.db"), false))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(1)
			if _, err := db.Exec(v.schema); err != nil {
				b.Fatal(err)
			}
			doc := strings.Repeat("x", 480)
			ctx := context.Background()
			cpu0 := cpuTime()
			b.ResetTimer()
			for n := 0; n < b.N; {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				st, err := tx.PrepareContext(ctx, v.insert)
				if err != nil {
					b.Fatal(err)
				}
				for j := 0; j < 200 && n < b.N; j, n = j+1, n+1 {
					delivery := uint64(n / 10)
					id := fmt.Sprintf("wamid.LOAD%019dx%d", delivery*2654435761%1000000007, n%10)
					subject := fmt.Sprintf("4477%08d", delivery%5000)
					args := append([]any{"WhatsApp", id, "wa", subject, nil, int64(1795928376000) + int64(n), doc}, v.extra...)
					if _, err := st.ExecContext(ctx, args...); err != nil {
						b.Fatal(err)
					}
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e3, "cpu-us/row")
		})
	}
}
