package mediafetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

// memStore is an in-memory FileStore for the unit tests of the fetcher's decisions only:
// it keeps the contract's observable behaviour (due times, leases, attempts, states,
// nothing kept on a failed read). The end-to-end tests use the real backends.
type memStore struct {
	mu    sync.Mutex
	files map[store.FileKey]*memFile
	// storeErr, when set, is returned by StoreFileBytes after reading (a store failure).
	storeErr error
	// statsReads counts FileStats calls.
	statsReads atomic.Int64
}

type memFile struct {
	job        store.FetchJob
	state      string
	reason     string // fail reason, or the last retry reason
	next       time.Time
	leaseUntil time.Time
	data       []byte
	mime       string
	retries    int
	// claims counts attempts as the contract does: each claim counts, a release takes
	// its claim back.
	claims int
}

func newMemStore() *memStore { return &memStore{files: map[store.FileKey]*memFile{}} }

// add queues a pending file received at receivedAt.
func (s *memStore) add(job store.FetchJob) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[job.Key] = &memFile{job: job, state: store.FilePending}
}

func (s *memStore) get(k store.FileKey) memFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.files[k]
}

func (s *memStore) ClaimFetches(_ context.Context, now time.Time, limit int, lease time.Duration) ([]store.FetchJob, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []*memFile
	for _, f := range s.files {
		if f.state == store.FilePending && !f.next.After(now) && !f.leaseUntil.After(now) {
			due = append(due, f)
		}
	}
	sort.Slice(due, func(i, j int) bool { return due[i].job.ReceivedAt.Before(due[j].job.ReceivedAt) })
	var out []store.FetchJob
	for _, f := range due[:min(limit, len(due))] {
		f.leaseUntil = now.Add(lease)
		job := f.job
		job.Attempts = f.claims
		f.claims++
		out = append(out, job)
	}
	return out, nil
}

func (s *memStore) StoreFileBytes(_ context.Context, k store.FileKey, r io.Reader, maxBytes int64, mimeType string) (store.StoredBytes, error) {
	s.mu.Lock()
	f, ok := s.files[k]
	s.mu.Unlock()
	if !ok {
		_, _ = io.Copy(io.Discard, io.LimitReader(r, maxBytes+1))
		return store.StoredBytes{}, store.ErrFileGone
	}
	data, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
	if err != nil {
		return store.StoredBytes{}, fmt.Errorf("read: %w", err)
	}
	if int64(len(data)) > maxBytes {
		return store.StoredBytes{}, fmt.Errorf("file: %w", store.ErrTooLarge)
	}
	if s.storeErr != nil {
		return store.StoredBytes{}, s.storeErr
	}
	sum := sha256.Sum256(data)
	if !store.ChecksumMatches(f.job.SHA256, sum[:]) { // as the backends check the webhook's sha256
		return store.StoredBytes{}, fmt.Errorf("file: %w", store.ErrChecksum)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.files[k]; !ok {
		return store.StoredBytes{}, store.ErrFileGone
	}
	f.state, f.data, f.mime, f.leaseUntil = store.FileFetched, data, mimeType, time.Time{}
	return store.StoredBytes{SHA256: fmt.Sprintf("%x", sum), Size: int64(len(data)), New: true}, nil
}

func (s *memStore) RetryFile(_ context.Context, k store.FileKey, next time.Time, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[k]
	if !ok {
		return store.ErrFileGone
	}
	f.retries++
	f.next, f.reason, f.leaseUntil = next, reason, time.Time{}
	return nil
}

func (s *memStore) ReleaseFile(_ context.Context, k store.FileKey, next time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[k]
	if !ok || f.state != store.FilePending {
		return store.ErrFileGone
	}
	f.next, f.leaseUntil, f.claims = next, time.Time{}, max(f.claims-1, 0)
	return nil
}

func (s *memStore) FailFile(_ context.Context, k store.FileKey, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[k]
	if !ok {
		return store.ErrFileGone
	}
	f.state, f.reason, f.leaseUntil = store.FileFailed, reason, time.Time{}
	if reason == store.FailNoToken {
		f.state = store.FileMetadataOnly
	}
	return nil
}

func (s *memStore) OpenFile(_ context.Context, k store.FileKey) (io.ReadCloser, error) {
	f := s.get(k)
	return io.NopCloser(bytes.NewReader(f.data)), nil
}

func (s *memStore) FileStats(_ context.Context, _ time.Time) (store.FileStats, error) {
	s.statsReads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	var st store.FileStats
	for _, f := range s.files {
		switch f.state {
		case store.FilePending:
			st.Pending++
			if st.OldestPending.IsZero() || f.job.ReceivedAt.Before(st.OldestPending) {
				st.OldestPending = f.job.ReceivedAt
			}
		case store.FileFetched:
			st.Fetched++
			st.Blobs++
			st.Bytes += int64(len(f.data))
		case store.FileFailed:
			st.Failed++
		case store.FileMetadataOnly:
			st.MetadataOnly++
		}
	}
	return st, nil
}

var _ store.FileStore = (*memStore)(nil)

// metaServer answers as the Graph API (GET /<version>/<media-id>) and as Meta's CDN
// (GET /cdn/<name>), counting what it serves.
type metaServer struct {
	t     testing.TB
	srv   *httptest.Server
	token atomic.Value // string: the token the Graph API accepts

	mu sync.Mutex
	// media: media id → its bytes and what the lookup declares.
	media map[string]*medium
	// lookups and downloads per media id (or CDN name).
	lookups, downloads map[string]int
	// served counts body bytes written by the CDN.
	served atomic.Int64
}

type medium struct {
	data         []byte
	mime         string
	declaredSHA  string // "" : sha256 of data (base64, as Meta sends it now)
	declaredSize int64  // 0: len(data)
	// lookupStatus, when set, is the Graph API's answer (with lookupBody).
	lookupStatus int
	lookupBody   string
	// expireFirst: the first download URL handed out answers 404 (it expired).
	expireFirst bool
	// cdnStatus, when set, is the CDN's answer.
	cdnStatus int
	// block, when set, stalls the CDN's answer until it is closed.
	block chan struct{}
	// chunked streams the bytes without a Content-Length.
	chunked bool
}

const testVersion = "v24.0"

func newMetaServer(t testing.TB, token string) *metaServer {
	m := &metaServer{t: t, media: map[string]*medium{}, lookups: map[string]int{}, downloads: map[string]int{}}
	m.token.Store(token)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /"+testVersion+"/{id}", m.lookup)
	mux.HandleFunc("GET /cdn/{name}", m.cdn)
	m.srv = httptest.NewServer(mux)
	t.Cleanup(m.srv.Close)
	return m
}

func (m *metaServer) set(id string, md *medium) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.media[id] = md
}

func (m *metaServer) count(counts map[string]int, id string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return counts[id]
}

func (m *metaServer) authorized(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bearer "+m.token.Load().(string)
}

func (m *metaServer) lookup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	m.mu.Lock()
	m.lookups[id]++
	n := m.lookups[id]
	var md *medium
	if found := m.media[id]; found != nil {
		c := *found
		md = &c
	}
	m.mu.Unlock()
	switch {
	case !m.authorized(r):
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"message":"Invalid OAuth access token.","type":"OAuthException","code":190}}`)
		return
	case md == nil:
		w.WriteHeader(http.StatusNotFound)
		return
	case md.lookupStatus != 0:
		w.WriteHeader(md.lookupStatus)
		_, _ = io.WriteString(w, md.lookupBody)
		return
	}
	sum := md.declaredSHA
	if sum == "" {
		s := sha256.Sum256(md.data)
		sum = base64.StdEncoding.EncodeToString(s[:])
	}
	size := md.declaredSize
	if size == 0 {
		size = int64(len(md.data))
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"messaging_product": "whatsapp", "id": id, "mime_type": md.mime, "sha256": sum, "file_size": size,
		// A fresh URL per lookup, as Meta's are signed and short-lived.
		"url": fmt.Sprintf("%s/cdn/%s?v=%d", m.srv.URL, id, n),
	})
}

func (m *metaServer) cdn(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	m.mu.Lock()
	m.downloads[name]++
	found := m.media[name]
	var md medium
	if found != nil {
		md = *found
	}
	m.mu.Unlock()
	if found == nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	// WhatsApp's lookaside URLs need the same bearer token; Messenger's CDN URLs none.
	if strings.HasPrefix(name, "wa") && !m.authorized(r) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if !strings.HasPrefix(name, "wa") && r.Header.Get("Authorization") != "" {
		m.t.Errorf("a token was sent to the CDN for %s", name)
	}
	if md.expireFirst && r.URL.Query().Get("v") == "1" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if md.block != nil {
		select {
		case <-md.block:
		case <-r.Context().Done():
			return
		}
	}
	if md.cdnStatus != 0 {
		w.WriteHeader(md.cdnStatus)
		return
	}
	if md.mime != "" {
		w.Header().Set("Content-Type", md.mime)
	}
	if !md.chunked {
		w.Header().Set("Content-Length", fmt.Sprint(len(md.data)))
	}
	for rest := md.data; len(rest) > 0; {
		n := min(len(rest), 32<<10)
		k, err := w.Write(rest[:n])
		m.served.Add(int64(k))
		if err != nil {
			return
		}
		rest = rest[n:]
		if md.chunked {
			w.(http.Flusher).Flush()
		}
	}
}

// recorder is a Reporter that keeps every report.
type recorder struct {
	mu      sync.Mutex
	reports []workerreport.Media
}

func (r *recorder) Report(_ context.Context, m workerreport.Media) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports = append(r.reports, m)
	return nil
}

func (r *recorder) all() []workerreport.Media {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]workerreport.Media(nil), r.reports...)
}

func (r *recorder) last() workerreport.Media {
	all := r.all()
	if len(all) == 0 {
		return workerreport.Media{}
	}
	return all[len(all)-1]
}

// env is a fetcher over a memStore and a metaServer, running until the test ends.
type env struct {
	store    *memStore
	meta     *metaServer
	registry *channels.Registry
	clock    *clocktesting.FakeClock
	reports  *recorder
	metrics  *prometheus.Registry
	fetcher  *Fetcher
}

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

const (
	waChannel = "wa"
	fbChannel = "fb"
	token     = "EAAtoken1"
)

func newEnv(t *testing.T, tweak func(*Config)) *env {
	t.Helper()
	e := &env{store: newMemStore(), meta: newMetaServer(t, token), registry: channels.NewRegistry(),
		clock: clocktesting.NewFakeClock(t0), reports: &recorder{}, metrics: prometheus.NewRegistry()}
	e.setToken(t, token)
	if err := e.registry.Upsert(channels.Channel{Name: fbChannel, Platform: meta.Messenger, Messenger: &channels.MessengerIDs{PageID: "222"},
		AppSecret: "s", VerifyToken: "v"}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: e.store, Channels: e.registry, GraphAPIVersion: testVersion, MaxBytes: 1 << 20,
		Concurrency: 2, RequestTimeout: 5 * time.Second, DownloadTimeout: 5 * time.Second,
		PollInterval: time.Hour, Reporter: e.reports, Clock: e.clock, Log: logr.Discard(),
		Metrics: NewMetrics(e.metrics, e.clock.Now)}
	if tweak != nil {
		tweak(&cfg)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.fetcher = f
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// setToken gives the WhatsApp channel an access token ("" : none), as a Secret change
// does through the registry.
func (e *env) setToken(t *testing.T, tok string) {
	t.Helper()
	if err := e.registry.Upsert(channels.Channel{Name: waChannel, Platform: meta.WhatsApp,
		WhatsApp:  &channels.WhatsAppIDs{PhoneNumberID: "111", BusinessAccountID: "999"},
		AppSecret: "s", VerifyToken: "v", AccessToken: tok, GraphAPIBaseURL: e.meta.srv.URL}); err != nil {
		t.Fatal(err)
	}
}

// waFile queues a WhatsApp file for media id id and wakes the fetcher.
func (e *env) waFile(id string, receivedAt time.Time) store.FileKey {
	k := store.FileKey{Platform: meta.WhatsApp, MessageID: "wamid." + id, Index: 0}
	e.store.add(store.FetchJob{Key: k, Channel: waChannel, MediaID: id, ReceivedAt: receivedAt})
	e.fetcher.Notify()
	return k
}

// fbFile queues a Messenger attachment at the CDN name and wakes the fetcher.
func (e *env) fbFile(name string) store.FileKey {
	k := store.FileKey{Platform: meta.Messenger, MessageID: "m_" + name, Index: 0}
	e.store.add(store.FetchJob{Key: k, Channel: fbChannel, URL: e.meta.srv.URL + "/cdn/" + name, ReceivedAt: t0})
	e.fetcher.Notify()
	return k
}

// metric reads one series of the fetcher's metrics (labels as name=value pairs).
func (e *env) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	return metricValue(t, e.metrics, name, labels...)
}

// metricValue reads one series of a registry (labels as name=value pairs).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

var errBoom = errors.New("disk on fire")

// stepWhenIdle advances the clock by d unless a fetch is in flight. Stepping the clock
// past a fetch's lease while it runs hands its file to the next claim, which spends an
// attempt without a download: a test counting downloads per attempt must not do that.
func (e *env) stepWhenIdle(d time.Duration) {
	e.fetcher.mu.Lock()
	idle := len(e.fetcher.busy) == 0
	e.fetcher.mu.Unlock()
	if idle {
		e.clock.Step(d)
	}
}
