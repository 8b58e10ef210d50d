package mediafetch

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
)

// The fetcher against the real backends: files committed with their deliveries are
// fetched into the store, each outcome as the store records it (counts, bytes read back).

func TestFetchIntoSQLite(t *testing.T) {
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	fetchIntoRealStore(t, st)
}

func TestFetchIntoPostgreSQL(t *testing.T) {
	if err := pgtest.CheckServer(); err != nil {
		t.Fatal(err)
	}
	st, err := postgres.Open(context.Background(), pgtest.FreshDatabase(t), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	fetchIntoRealStore(t, st)
}

// fileStore is the backend's FileStore. Until both backends implement the contract
// (internal/store/files.go), the end-to-end tests have nothing to run against.
func fileStore(t *testing.T, st store.Store) store.FileStore {
	t.Helper()
	fs, ok := st.(store.FileStore)
	if !ok {
		t.Skipf("%T does not implement store.FileStore yet: shared files are stored by the media-store work", st)
	}
	return fs
}

func fetchIntoRealStore(t *testing.T, st store.Store) {
	g := NewWithT(t)
	fs := fileStore(t, st)
	ctx := context.Background()
	srv := newMetaServer(t, token)
	reg := channels.NewRegistry()
	clk := clocktesting.NewFakeClock(time.Now())
	upsert := func(name, phone, tok string) {
		t.Helper()
		g.Expect(reg.Upsert(channels.Channel{Name: name, Platform: meta.WhatsApp,
			WhatsApp:  &channels.WhatsAppIDs{PhoneNumberID: channels.ID(phone), BusinessAccountID: "999"},
			AppSecret: "s", VerifyToken: "v", AccessToken: tok, GraphAPIBaseURL: srv.srv.URL})).To(Succeed())
	}
	upsert(waChannel, "111", token)
	upsert("wa-revoked", "112", "EAArevoked")
	g.Expect(reg.Upsert(channels.Channel{Name: fbChannel, Platform: meta.Messenger, Messenger: &channels.MessengerIDs{PageID: "222"},
		AppSecret: "s", VerifyToken: "v"})).To(Succeed())

	good := payload(300_000, 21)
	fb := payload(40_000, 22)
	fresh := payload(9_000, 23)
	later := payload(7_000, 24)
	wrong := sha256.Sum256([]byte("not these bytes"))
	srv.set("waok", &medium{data: good, mime: "image/jpeg"})
	srv.set("waexp", &medium{data: fresh, mime: "audio/ogg", expireFirst: true})
	srv.set("wasum", &medium{data: payload(5000, 25), declaredSHA: hex.EncodeToString(wrong[:])})
	srv.set("warevoked", &medium{data: later, mime: "video/mp4"})
	srv.set("fbimg", &medium{data: fb, mime: "image/png"})
	srv.set("fbbig", &medium{data: payload(8<<20, 26), chunked: true})
	block := make(chan struct{})
	srv.set("waslow", &medium{data: payload(100, 27), mime: "image/gif", block: block})

	commit := func(channel string, f meta.File) store.FileKey {
		t.Helper()
		id := fmt.Sprintf("msg.%s.%d", f.MediaID+f.URL, len(f.URL))
		f.Channel, f.MessageID, f.Subject = channel, id, "15550001111"
		b := &meta.Batch{
			Messages: []meta.Message{{Platform: f.Platform, Channel: channel, ID: id, Subject: f.Subject,
				Direction: meta.Inbound, Type: f.Kind, Timestamp: clk.Now()}},
			Files: []meta.File{f},
		}
		res, err := st.Commit(ctx, b)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.FilesNew).To(Equal(1))
		return store.FileKey{Platform: f.Platform, MessageID: id, Index: f.Index}
	}
	wa := func(id string) meta.File { return meta.File{Platform: meta.WhatsApp, Kind: "image", MediaID: id} }
	keys := map[string]store.FileKey{}
	for _, id := range []string{"waok", "waexp", "wasum", "waunknown", "waslow"} {
		keys[id] = commit(waChannel, wa(id))
	}
	keys["warevoked"] = commit("wa-revoked", wa("warevoked"))
	for _, name := range []string{"fbimg", "fbbig"} {
		keys[name] = commit(fbChannel, meta.File{Platform: meta.Messenger, Kind: "image", URL: srv.srv.URL + "/cdn/" + name})
	}

	reports := &recorder{}
	metrics := prometheus.NewRegistry()
	f, err := New(Config{Store: fs, Channels: reg, GraphAPIVersion: testVersion, MaxBytes: 1 << 20, Concurrency: 3,
		RequestTimeout: 5 * time.Second, DownloadTimeout: time.Second, PollInterval: time.Hour,
		Reporter: reports, Clock: clk, Log: logr.Discard(), Metrics: NewMetrics(metrics, clk.Now)})
	g.Expect(err).NotTo(HaveOccurred())
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); f.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })

	stats := func() store.FileStats {
		s, err := fs.FileStats(ctx, clk.Now())
		g.Expect(err).NotTo(HaveOccurred())
		return s
	}
	// Fetched: waok, waexp, fbimg. Failed: wasum (checksum), waunknown (not found),
	// fbbig (too large). Pending: waslow (timed out, retried later), warevoked (paused).
	g.Eventually(func() [3]int { s := stats(); return [3]int{s.Fetched, s.Failed, s.Pending} }, 20*time.Second).
		Should(Equal([3]int{3, 3, 2}))
	for id, want := range map[string][]byte{"waok": good, "waexp": fresh, "fbimg": fb} {
		g.Expect(readFile(t, fs, keys[id])).To(Equal(want), id)
	}
	for _, id := range []string{"wasum", "fbbig", "waunknown"} {
		r, err := fs.OpenFile(ctx, keys[id])
		if err == nil {
			b, _ := io.ReadAll(r)
			_ = r.Close()
			g.Expect(b).To(BeEmpty(), "no byte of %s is kept", id)
		}
	}
	g.Expect(srv.count(srv.lookups, "waexp")).To(Equal(2))
	g.Eventually(func() bool { return reports.last().Channels["wa-revoked"].TokenRefusedAt != nil }).Should(BeTrue())
	g.Eventually(func() float64 {
		return metricValue(t, metrics, "omniflow_worker_files_fetch_retries_total", "reason", RetryTimeout)
	},
		10*time.Second).Should(BeEquivalentTo(1), "the slow download timed out and waits for its retry")

	// The revoked channel gets a new token; the slow server recovers; the retry falls due.
	upsert("wa-revoked", "112", token)
	close(block)
	g.Eventually(func() int { clk.Step(10 * time.Second); return stats().Fetched }, 20*time.Second).Should(Equal(5))
	s := stats()
	g.Expect(s.Pending).To(BeZero())
	g.Expect(s.OldestPending.IsZero()).To(BeTrue())
	g.Expect(s.Blobs).To(Equal(5))
	g.Expect(s.Bytes).To(BeEquivalentTo(len(good) + len(fb) + len(fresh) + len(later) + 100))
	g.Expect(readFile(t, fs, keys["warevoked"])).To(Equal(later))
	g.Expect(srv.count(srv.downloads, "waok")).To(Equal(1), "a fetched file is never fetched again")
}

func readFile(t *testing.T, fs store.FileStore, k store.FileKey) []byte {
	t.Helper()
	r, err := fs.OpenFile(context.Background(), k)
	if err != nil {
		t.Fatalf("open %v: %v", k, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %v: %v", k, err)
	}
	return b
}

// releaseCounter is the real store, counting the fetcher's releases: proof that a
// paused channel's file was claimed again (and given back) in every lease period.
type releaseCounter struct {
	store.FileStore
	releases atomic.Int64
}

func (c *releaseCounter) ReleaseFile(ctx context.Context, k store.FileKey, next time.Time) error {
	err := c.FileStore.ReleaseFile(ctx, k, next)
	if err == nil {
		c.releases.Add(1)
	}
	return err
}

// A channel whose token Meta refuses for far longer than the retry budget lasts (many
// lease periods, each a claim of its file) spends none of its file's attempts: once the
// token is fixed, the file is fetched at once, on its first counted attempt. Attempts
// and due times are read from the database beneath the store.
func TestARefusedTokenHeldAcrossLeasesSpendsNoAttemptOnSQLite(t *testing.T) {
	g := NewWithT(t)
	st, db, attempts := sqliteWithReader(t, g)

	ctx := context.Background()
	srv := newMetaServer(t, token)
	data := payload(6_000, 31)
	srv.set("walong", &medium{data: data, mime: "image/jpeg"})
	reg := channels.NewRegistry()
	setToken := func(tok string) { upsertWhatsApp(g, reg, srv, tok) }
	setToken("EAArevoked")
	clk := clocktesting.NewFakeClock(time.Now())
	const id = "wamid.long"
	commitWhatsAppFile(g, st, id, "walong", clk.Now())

	fs := &releaseCounter{FileStore: fileStore(t, st)}
	cfg := Config{Store: fs, Channels: reg, GraphAPIVersion: testVersion, RequestTimeout: time.Second,
		DownloadTimeout: time.Minute, MaxAttempts: 3, PollInterval: time.Hour, Clock: clk, Log: logr.Discard()}
	f, err := New(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); f.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })

	g.Eventually(fs.releases.Load, 10*time.Second).Should(BeEquivalentTo(1), "the refused file is given back")
	g.Expect(srv.count(srv.lookups, "walong")).To(Equal(1))
	// Ten times the budget of lease periods (a lease is 72 s here), each one a claim
	// and a release; between the two a claim's attempt shows, never more.
	lease := cfg.DownloadTimeout + 2*cfg.RequestTimeout + leaseMargin
	for period := range 10 * cfg.MaxAttempts {
		before := fs.releases.Load()
		g.Eventually(func() int64 { clk.Step(lease / 8); return fs.releases.Load() }, 10*time.Second).
			Should(BeNumerically(">", before), "period %d: the file is claimed and released again", period)
		g.Expect(attempts()).To(BeNumerically("<=", 1), "period %d", period)
	}
	g.Expect(srv.count(srv.lookups, "walong")).To(Equal(1), "a paused channel sends no request")

	// The token Secret changes. The clock moves to the pause's next check only, well
	// before the file's release ends: it is fetched because the resumed channel's
	// files are made due at once.
	setToken(token)
	var releasedUntil int64
	g.Expect(db.QueryRow(`SELECT next_at FROM files`).Scan(&releasedUntil)).To(Succeed())
	k := store.FileKey{Platform: meta.WhatsApp, MessageID: id}
	g.Eventually(func() error {
		// The fetcher may set its next token check only after a step (it was still
		// busy with the last release): step again, a check at a time, never as far as
		// the end of the release.
		if next := clk.Now().Add(tokenCheckInterval); next.UnixMilli() < releasedUntil {
			clk.Step(tokenCheckInterval)
		}
		r, err := fs.OpenFile(ctx, k)
		if err == nil {
			_ = r.Close()
		}
		return err
	}, 10*time.Second).Should(Succeed(), "fetched once the token changed")
	g.Expect(clk.Now().UnixMilli()).To(BeNumerically("<", releasedUntil), "fetched before the release ended")
	g.Expect(readFile(t, fs, k)).To(Equal(data))
	g.Expect(attempts()).To(Equal(1), "the fetch that worked is the only attempt counted")
	g.Expect(srv.count(srv.lookups, "walong")).To(Equal(2))
}

// sqliteWithReader opens a real SQLite store and, beside it, a read-only handle on its
// database, with which attempts() reads the one file record's attempt count.
func sqliteWithReader(t *testing.T, g Gomega) (store.Store, *sql.DB, func() int) {
	dir := t.TempDir()
	st, err := sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName)+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return st, db, func() int {
		var n int
		g.Expect(db.QueryRow(`SELECT attempts FROM files`).Scan(&n)).To(Succeed())
		return n
	}
}

// upsertWhatsApp puts waChannel, with tok, at srv's Graph API into reg.
func upsertWhatsApp(g Gomega, reg *channels.Registry, srv *metaServer, tok string) {
	g.ExpectWithOffset(1, reg.Upsert(channels.Channel{Name: waChannel, Platform: meta.WhatsApp,
		WhatsApp:  &channels.WhatsAppIDs{PhoneNumberID: "111", BusinessAccountID: "999"},
		AppSecret: "s", VerifyToken: "v", AccessToken: tok, GraphAPIBaseURL: srv.srv.URL})).To(Succeed())
}

// commitWhatsAppFile commits one inbound WhatsApp message id with one file of mediaID.
func commitWhatsAppFile(g Gomega, st store.Store, id, mediaID string, at time.Time) {
	_, err := st.Commit(context.Background(), &meta.Batch{
		Messages: []meta.Message{{Platform: meta.WhatsApp, Channel: waChannel, ID: id, Subject: "15550001111",
			Direction: meta.Inbound, Type: "image", Timestamp: at}},
		Files: []meta.File{{Platform: meta.WhatsApp, Channel: waChannel, MessageID: id, Subject: "15550001111",
			Kind: "image", MediaID: mediaID}},
	})
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
}

// A download cut short by shutdown is given back to the store: no attempt spent, due at
// once, so that the restarted fetcher takes it without the clock moving at all (a file
// left to its lease would wait 72 s here, its attempt counted). Read from the database
// beneath a real SQLite store.
func TestADownloadCutShortByShutdownIsReleasedOnSQLite(t *testing.T) {
	g := NewWithT(t)
	st, db, attempts := sqliteWithReader(t, g)
	ctx := context.Background()
	srv := newMetaServer(t, token)
	data := payload(4_000, 41)
	srv.set("wacut", &medium{data: data, mime: "image/jpeg", block: make(chan struct{})}) // stalls until shutdown
	reg := channels.NewRegistry()
	upsertWhatsApp(g, reg, srv, token)
	clk := clocktesting.NewFakeClock(time.Now())
	const id = "wamid.cut"
	commitWhatsAppFile(g, st, id, "wacut", clk.Now())
	fs := fileStore(t, st)
	cfg := Config{Store: fs, Channels: reg, GraphAPIVersion: testVersion, RequestTimeout: time.Second,
		DownloadTimeout: time.Minute, MaxAttempts: 3, PollInterval: time.Hour, Clock: clk, Log: logr.Discard()}
	start := func() (stop func()) {
		f, err := New(cfg)
		g.Expect(err).NotTo(HaveOccurred())
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); f.Run(runCtx) }()
		return func() { cancel(); <-done }
	}

	stop := start()
	g.Eventually(func() int { return srv.count(srv.downloads, "wacut") }, 10*time.Second).Should(Equal(1), "the download is under way")
	g.Expect(attempts()).To(Equal(1), "the claim counted an attempt")
	stop() // Run returns only once the interrupted file was given back
	g.Expect(attempts()).To(BeZero(), "the interrupted attempt is taken back")
	var nextAt int64
	g.Expect(db.QueryRow(`SELECT next_at FROM files`).Scan(&nextAt)).To(Succeed())
	g.Expect(nextAt).To(BeNumerically("<=", clk.Now().UnixMilli()), "due at once, not at the lease's end")

	// The restart, the clock where it was: the file is fetched at once.
	srv.set("wacut", &medium{data: data, mime: "image/jpeg"})
	t.Cleanup(start())
	k := store.FileKey{Platform: meta.WhatsApp, MessageID: id}
	g.Eventually(func() error {
		r, err := fs.OpenFile(ctx, k)
		if err == nil {
			_ = r.Close()
		}
		return err
	}, 10*time.Second).Should(Succeed())
	g.Expect(readFile(t, fs, k)).To(Equal(data))
	g.Expect(attempts()).To(Equal(1), "the fetch that worked is the only attempt counted")
	g.Expect(srv.count(srv.downloads, "wacut")).To(Equal(2))
}
