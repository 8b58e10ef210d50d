package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// A database written before retention existed opens, gains the reaction and
// status-time columns filled from the stored documents, and its old records are pruned
// by age.
func TestRetentionReachesRecordsOfEarlierVersion(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE messages (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, platform TEXT NOT NULL,
			message_id TEXT NOT NULL, channel TEXT NOT NULL, subject TEXT NOT NULL, subject_alt TEXT, ts BIGINT, doc TEXT NOT NULL);
		CREATE TABLE statuses (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, platform TEXT NOT NULL, message_id TEXT NOT NULL,
			channel TEXT NOT NULL, subject TEXT NOT NULL, subject_alt TEXT, rank INTEGER NOT NULL, doc TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range storetest.MigratedMessages {
		if _, err := conn.Exec(ctx, `INSERT INTO messages(platform, message_id, channel, subject, ts, doc) VALUES ('WhatsApp', $1, 'c', 'u', $2, $3)`,
			m.ID, m.TS, m.Doc); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range storetest.MigratedStatuses {
		if _, err := conn.Exec(ctx, `INSERT INTO statuses(platform, message_id, channel, subject, rank, doc) VALUES ('WhatsApp', $1, 'c', 'u', 3, $2)`,
			st.ID, st.Doc); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s := openDSN(t, dsn, Options{})
	defer s.Close()
	storetest.CheckPrunesMigrated(t, s)
}
