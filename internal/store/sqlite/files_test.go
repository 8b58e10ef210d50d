package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storetest"
)

// The file suite reads the files directory beneath the store: every file in it,
// temporary ones included. With erasure batches of one row, bytes are removed batch by
// batch, as each commits.
func TestFilesConformance(t *testing.T) {
	for _, o := range []Options{{}, {EraseBatch: 1}} {
		t.Run(fmt.Sprintf("EraseBatch=%d", o.EraseBatch), func(t *testing.T) {
			storetest.RunFiles(t, func(t *testing.T) (store.Store, storetest.Stored) {
				dir := t.TempDir()
				return openFiles(t, dir, o), func(t *testing.T) [][]byte { return filesIn(t, dir) }
			})
		})
	}
}

// filesIn returns the content of every regular file under dir's FilesDir.
func filesIn(t *testing.T, dir string) [][]byte {
	t.Helper()
	var out [][]byte
	err := filepath.WalkDir(filepath.Join(dir, FilesDir), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out = append(out, b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func openFiles(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func commitFile(t *testing.T, s *Store, id string) store.FileKey {
	t.Helper()
	m := meta.Message{Platform: meta.WhatsApp, Channel: "c", ID: id, Subject: "u1", Type: "image"}
	f := meta.File{Platform: meta.WhatsApp, Channel: "c", MessageID: id, Subject: "u1", Kind: "image", MediaID: "media-" + id}
	if _, err := s.Commit(context.Background(), &meta.Batch{Messages: []meta.Message{m}, Files: []meta.File{f}}); err != nil {
		t.Fatal(err)
	}
	return store.FileKey{Platform: meta.WhatsApp, MessageID: id}
}

// What a crash leaves (a temporary file; bytes renamed but their record's commit lost,
// or an erasure committed but its unlink not done) is swept at the next Open, and only
// then: an export opens the store read-only and touches nothing.
func TestFilesSweptOnOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openFiles(t, dir, Options{})
	kept := []byte("bytes a record names")
	stored, err := s.StoreFileBytes(context.Background(), commitFile(t, s, "m1"), bytes.NewReader(kept), 1<<20, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	orphan := bytes.Repeat([]byte("no record names these"), 10)
	sum := sha256.Sum256(orphan)
	orphanPath := blobPath(dir, hex.EncodeToString(sum[:]))
	tmpPath := filepath.Join(dir, FilesDir, tmpPrefix+"crashed")
	for p, b := range map[string][]byte{orphanPath: orphan, tmpPath: orphan[:7]} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ro := openFiles(t, dir, Options{ReadOnly: true})
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(filesIn(t, dir)); n != 3 {
		t.Fatalf("a read-only open changed the files directory: %d files, want 3", n)
	}
	s = openFiles(t, dir, Options{})
	defer s.Close()
	got := filesIn(t, dir)
	if len(got) != 1 || !bytes.Equal(got[0], kept) {
		t.Fatalf("after the sweep: %d files, want only the named bytes", len(got))
	}
	if _, err := os.Stat(blobPath(dir, stored.SHA256)); err != nil {
		t.Fatalf("the named bytes moved: %v", err)
	}
}

// cutReader yields n bytes, then ends as end says: a download cut off midway (an
// error), or in progress when the process is killed (end blocks).
type cutReader struct {
	n   int
	end func() error
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, c.end()
	}
	k := min(len(p), c.n)
	for i := range p[:k] {
		p[i] = 'z'
	}
	c.n -= k
	return k, nil
}

// A download that fails midway leaves nothing: no final name, no temporary file, and
// the file still pending.
func TestFailedDownloadLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openFiles(t, dir, Options{})
	defer s.Close()
	key := commitFile(t, s, "m1")
	if _, err := s.StoreFileBytes(context.Background(), key, &cutReader{n: 300 << 10, end: func() error { return errors.New("connection reset") }}, 1<<20, ""); err == nil {
		t.Fatal("StoreFileBytes of a failing reader succeeded")
	}
	if got := filesIn(t, dir); len(got) != 0 {
		t.Fatalf("%d files left by a failed download", len(got))
	}
	jobs, err := s.ClaimFetches(context.Background(), time.Now(), 10, time.Minute)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("claim after a failed download: %+v, %v; want the file still pending", jobs, err)
	}
}

// A store from before shared files were fetched gains the queue's columns; its file
// records join the queue.
func TestFilesOfEarlierVersionJoinTheQueue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	old, err := sql.Open("sqlite", dsn(filepath.Join(dir, FileName), false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(fmt.Sprintf(storetest.MigratedFilesTable, "INTEGER PRIMARY KEY")); err != nil {
		t.Fatal(err)
	}
	for _, f := range storetest.MigratedFiles {
		if _, err := old.Exec(`INSERT INTO files(platform, message_id, idx, channel, subject, media_id, doc)
			VALUES (json_extract(?1, '$.platform'), ?2, 0, 'c', 'u', ?3, ?1)`, f.Doc, f.ID, nullable(f.MediaID)); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s := openFiles(t, dir, Options{})
	defer s.Close()
	storetest.CheckFilesMigrated(t, s)
}

// childEnv marks TestFilesChildProcess's run as TestFilesKilledMidDownload's child, in
// the data directory as its working directory.
const childEnv = "OMNIFLOW_TEST_FILES_CHILD"

// TestFilesChildProcess is TestFilesKilledMidDownload's child: it stores a file record,
// starts storing its bytes and stalls halfway. It does nothing when run by itself.
func TestFilesChildProcess(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("run by TestFilesKilledMidDownload")
	}
	s := openFiles(t, ".", Options{})
	key := commitFile(t, s, "m1")
	// Halfway, it says so and blocks until killed.
	_, _ = s.StoreFileBytes(context.Background(), key, &cutReader{n: 512 << 10, end: func() error {
		fmt.Println("stalled")
		select {}
	}}, 1<<20, "")
}

// A worker killed (SIGKILL) halfway through storing a file's bytes leaves no partial
// bytes under a final name; the next Open sweeps the temporary file, and the file is
// still pending, to be fetched again.
func TestFilesKilledMidDownload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	killChildWhen(t, dir, "TestFilesChildProcess", childEnv+"=1", "stalled")
	var finals, temps int
	err := filepath.WalkDir(filepath.Join(dir, FilesDir), func(p string, d os.DirEntry, err error) error {
		switch {
		case err != nil || d.IsDir():
		case strings.HasPrefix(d.Name(), tmpPrefix):
			temps++
		default:
			finals++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if finals != 0 || temps != 1 {
		t.Fatalf("after the kill: %d files under final names and %d temporary ones, want 0 and 1", finals, temps)
	}
	s := openFiles(t, dir, Options{})
	defer s.Close()
	if got := filesIn(t, dir); len(got) != 0 {
		t.Fatalf("%d files left after the open's sweep", len(got))
	}
	jobs, err := s.ClaimFetches(context.Background(), time.Now(), 10, time.Minute)
	if err != nil || len(jobs) != 1 || jobs[0].Key.MessageID != "m1" {
		t.Fatalf("claim after the crash: %+v, %v; want m1 pending", jobs, err)
	}
}

// killChildWhen runs the test named child of this binary in dir with env set, waits
// until it prints the line said (it is then in the middle of the work under test),
// and SIGKILLs it: a crash at that point, with nothing flushed or closed.
func killChildWhen(t *testing.T, dir, child, env, said string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+child+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env)
	cmd.Dir = dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != said+"\n" {
		_ = cmd.Process.Kill()
		t.Fatalf("child said %q, %v", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // killed: its error is the signal
}
