package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
)

// A worker killed with SIGKILL while files are being fetched, with more queued, resumes
// after a restart and stores every file exactly once: a file stored before the kill is
// never requested again, every file is served whole exactly once, and a download cut
// off mid-body never shows as a stored file (the store reads back every byte right).
func TestMediaFetchResumesAfterSIGKILLOnSQLite(t *testing.T) {
	requireFileStores(t)
	// Parallel: most of the test waits for the leases of the files cut off by the kill
	// to run out, and for the restarted worker's next look at the queue.
	t.Parallel()
	dataDir := t.TempDir()
	mediaCrashRound(t, nil, []string{"--data-dir", dataDir}, func() store.Store {
		st, err := sqlite.Open(dataDir, sqlite.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

func TestMediaFetchResumesAfterSIGKILLOnPostgreSQL(t *testing.T) {
	requireFileStores(t)
	t.Parallel()
	if err := pgtest.CheckServer(); err != nil {
		t.Fatal(err)
	}
	dsn := pgtest.FreshDatabase(t)
	mediaCrashRound(t, []string{envPostgresDSN + "=" + dsn}, []string{"--store", "postgres"}, func() store.Store {
		st, err := postgres.Open(context.Background(), dsn, postgres.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// graphAPI answers as the Graph API and the lookaside CDN for media ids m0..m<n-1>. The
// first `first` downloads are served at once; later ones send half their bytes and then
// stall until the client goes away or gate closes.
type graphAPI struct {
	srv   *httptest.Server
	first int
	gate  chan struct{}

	mu                          sync.Mutex
	started                     int
	stalled                     int
	lookups, downloads, servedW map[string]int
}

const mediaToken = "EAAworker-test-token"

func mediaBytes(id string) []byte {
	b := make([]byte, 200_000+len(id)*1000)
	for i := range b {
		b[i] = byte(i*31) ^ id[len(id)-1]
	}
	return b
}

func newGraphAPI(t *testing.T, first int) *graphAPI {
	g := &graphAPI{first: first, gate: make(chan struct{}),
		lookups: map[string]int{}, downloads: map[string]int{}, servedW: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v24.0/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		g.mu.Lock()
		g.lookups[id]++
		g.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+mediaToken {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		sum := sha256.Sum256(mediaBytes(id))
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "mime_type": "image/jpeg", "file_size": len(mediaBytes(id)),
			"sha256": base64.StdEncoding.EncodeToString(sum[:]), "url": g.srv.URL + "/lookaside/" + id})
	})
	mux.HandleFunc("GET /lookaside/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		data := mediaBytes(id)
		g.mu.Lock()
		g.downloads[id]++
		g.started++
		stall := g.started > g.first
		g.mu.Unlock()
		w.Header().Set("Content-Type", "image/jpeg")
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		if stall {
			_, _ = w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			g.mu.Lock()
			g.stalled++
			g.mu.Unlock()
			select {
			case <-g.gate:
			case <-r.Context().Done():
				return
			}
			if _, err := w.Write(data[len(data)/2:]); err == nil {
				g.mu.Lock()
				g.servedW[id]++
				g.mu.Unlock()
			}
			return
		}
		if _, err := w.Write(data); err == nil {
			g.mu.Lock()
			g.servedW[id]++
			g.mu.Unlock()
		}
	})
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *graphAPI) counts() (served, stalled int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.servedW), g.stalled
}

func mediaDelivery(id string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"109876543210987","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001234","phone_number_id":"123456789012345"},"contacts":[{"profile":{"name":"Media"},"wa_id":"15550009999"}],"messages":[{"from":"15550009999","id":"wamid.%s","timestamp":"1781100000","type":"image","image":{"id":%q,"mime_type":"image/jpeg"}}]}}]}]}`, id, id))
}

// fetchedTotal reads the worker's omniflow_worker_files_fetched_total.
func fetchedTotal(t *testing.T, addr string) int {
	t.Helper()
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "omniflow_worker_files_fetched_total "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return -1
}

func mediaCrashRound(t *testing.T, env, storeArgs []string, openReadOnly func() store.Store) {
	const files, first = 10, 3
	api := newGraphAPI(t, first)
	dir := t.TempDir()
	chFile := filepath.Join(dir, "channels.yaml")
	yaml := channelsYAML + "    accessToken: " + mediaToken + "\n    graphAPIBaseURL: " + api.srv.URL + "\n"
	if err := os.WriteFile(chFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// Short timeouts keep the lease of the files cut off by the kill short (2 s + 2 x 1 s
	// + the margin): the restarted worker takes them back once it runs out.
	args := append(append([]string{}, storeArgs...), "--channels", chFile, "--media-concurrency", "2",
		"--media-download-timeout", "2s", "--media-request-timeout", "1s")
	w := startWorkerWith(t, env, args...)
	for i := range files {
		if code, err := post(w.addr, mediaDelivery(fmt.Sprintf("m%d", i))); err != nil || code != 200 {
			t.Fatalf("delivery %d: %d %v\n%s", i, code, err, w.log())
		}
	}
	// The first files are stored and two downloads are cut off mid-body by the kill.
	waitUntil(t, "files fetched and downloads in flight", func() bool {
		served, stalled := api.counts()
		return fetchedTotal(t, w.addr) == first && served == first && stalled == 2
	})
	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-w.done
	// The files served whole before the kill: the ones stored (which ones depends on
	// how the lookups raced, not on the order of the deliveries).
	api.mu.Lock()
	storedBefore := maps.Clone(api.servedW)
	api.mu.Unlock()
	if len(storedBefore) != first {
		t.Fatalf("served whole before the kill: %v, want %d files", storedBefore, first)
	}

	// Nothing half-written is visible: exactly the files stored before the kill, whole.
	st := openReadOnly()
	stats, err := st.(store.FileStore).FileStats(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if stats.Fetched != first || stats.Pending != files-first {
		t.Fatalf("after SIGKILL: %+v, want %d fetched and %d pending", stats, first, files-first)
	}
	checkStoredBytes(t, st.(store.FileStore), files)
	for id := range storedBefore {
		r, err := st.(store.FileStore).OpenFile(context.Background(), store.FileKey{Platform: meta.WhatsApp, MessageID: "wamid." + id})
		if err != nil {
			t.Fatalf("%s, served whole before the kill, is not stored: %v", id, err)
		}
		_ = r.Close()
	}
	_ = st.Close()
	close(api.gate)

	w = startWorkerWith(t, env, args...)
	deadline := time.Now().Add(90 * time.Second)
	for fetchedTotal(t, w.addr) != files-first {
		if time.Now().After(deadline) {
			t.Fatalf("restarted worker fetched %d of %d files\n%s", fetchedTotal(t, w.addr), files-first, w.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-w.done; err != nil {
		t.Fatalf("worker exit: %v\n%s", err, w.log())
	}
	st = openReadOnly()
	defer st.Close()
	stats, err = st.(store.FileStore).FileStats(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if stats.Fetched != files || stats.Pending != 0 || stats.Blobs != files {
		t.Fatalf("after the restart: %+v, want all %d fetched, one blob each", stats, files)
	}
	checkStoredBytes(t, st.(store.FileStore), files)

	api.mu.Lock()
	defer api.mu.Unlock()
	for i := range files {
		id := fmt.Sprintf("m%d", i)
		if api.servedW[id] != 1 {
			t.Errorf("%s served whole %d times, want once", id, api.servedW[id])
		}
		if storedBefore[id] > 0 && (api.downloads[id] != 1 || api.lookups[id] != 1) {
			t.Errorf("%s, stored before the kill, was requested again: %d lookups, %d downloads", id, api.lookups[id], api.downloads[id])
		}
	}
}

// requireFileStores skips the test while the backends keep no file bytes (the store
// side of shared files is built beside the fetcher, internal/store/files.go).
func requireFileStores(t *testing.T) {
	t.Helper()
	for _, st := range []any{(*sqlite.Store)(nil), (*postgres.Store)(nil)} {
		if _, ok := st.(store.FileStore); !ok {
			t.Skipf("%T does not implement store.FileStore yet", st)
		}
	}
}

// checkStoredBytes reads back every fetched file of m0..m<n-1> and compares it whole.
func checkStoredBytes(t *testing.T, fs store.FileStore, n int) {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("m%d", i)
		r, err := fs.OpenFile(context.Background(), store.FileKey{Platform: meta.WhatsApp, MessageID: "wamid." + id})
		if err != nil {
			continue // not fetched (yet)
		}
		b, err := io.ReadAll(r)
		_ = r.Close()
		if err != nil || string(b) != string(mediaBytes(id)) {
			t.Errorf("%s reads back %d bytes (%v), want its %d bytes exactly", id, len(b), err, len(mediaBytes(id)))
		}
	}
}
