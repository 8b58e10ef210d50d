package sqlite

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// A store written before retention existed opens, gains the reaction and status-time
// columns filled from the stored documents, and its old records are pruned by age.
func TestRetentionReachesRecordsOfEarlierVersion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	old, err := sql.Open("sqlite", dsn(filepath.Join(dir, FileName), false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(`CREATE TABLE messages (id INTEGER PRIMARY KEY, platform TEXT NOT NULL, message_id TEXT NOT NULL,
			channel TEXT NOT NULL, subject TEXT NOT NULL, subject_alt TEXT, ts INTEGER, doc TEXT NOT NULL);
		CREATE TABLE statuses (id INTEGER PRIMARY KEY, platform TEXT NOT NULL, message_id TEXT NOT NULL, channel TEXT NOT NULL,
			subject TEXT NOT NULL, subject_alt TEXT, rank INTEGER NOT NULL, doc TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range storetest.MigratedMessages {
		if _, err := old.Exec(`INSERT INTO messages(platform, message_id, channel, subject, ts, doc) VALUES ('WhatsApp', ?, 'c', 'u', ?, ?)`,
			m.ID, m.TS, m.Doc); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range storetest.MigratedStatuses {
		if _, err := old.Exec(`INSERT INTO statuses(platform, message_id, channel, subject, rank, doc) VALUES ('WhatsApp', ?, 'c', 'u', 3, ?)`,
			st.ID, st.Doc); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.CheckPrunesMigrated(t, s)
}
