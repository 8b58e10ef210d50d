package mediafetch

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func state(e *env, k store.FileKey) func() string {
	return func() string { return e.store.get(k).state }
}

func TestWhatsAppMediaIsResolvedThenDownloadedWithTheChannelsToken(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, nil)
	data := payload(100_000, 1)
	e.meta.set("wa1", &medium{data: data, mime: "image/jpeg"})
	k := e.waFile("wa1", t0)
	g.Eventually(state(e, k)).Should(Equal(store.FileFetched))
	f := e.store.get(k)
	g.Expect(bytes.Equal(f.data, data)).To(BeTrue(), "the bytes Meta served are stored")
	g.Expect(f.mime).To(Equal("image/jpeg"), "the MIME type Meta declared is recorded")
	g.Expect(e.meta.count(e.meta.lookups, "wa1")).To(Equal(1))
	g.Expect(e.meta.count(e.meta.downloads, "wa1")).To(Equal(1))
	g.Expect(e.metric(t, "omniflow_worker_files_fetched_total")).To(BeEquivalentTo(1))
	g.Expect(e.metric(t, "omniflow_worker_files_fetched_bytes_total")).To(BeEquivalentTo(len(data)))
}

func TestAnExpiredDownloadURLIsResolvedAgainFromTheMediaID(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, nil)
	e.meta.set("wa2", &medium{data: payload(5000, 2), mime: "audio/ogg", expireFirst: true})
	k := e.waFile("wa2", t0)
	g.Eventually(state(e, k)).Should(Equal(store.FileFetched))
	g.Expect(e.meta.count(e.meta.lookups, "wa2")).To(Equal(2), "the media id is resolved again for a fresh URL")
	g.Expect(e.meta.count(e.meta.downloads, "wa2")).To(Equal(2))
	g.Expect(e.store.get(k).claims).To(Equal(1), "within one attempt")
}

func TestMediaMetaDoesNotKnowFailsAsNotFound(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, nil)
	gone := e.waFile("unknown", t0) // the Graph API answers 404
	e.meta.set("bad", &medium{lookupStatus: http.StatusBadRequest,
		lookupBody: `{"error":{"message":"Unsupported get request.","type":"GraphMethodException","code":100,"error_subcode":33}}`})
	bad := e.waFile("bad", t0)
	e.meta.set("fbgone", &medium{cdnStatus: http.StatusNotFound})
	cdn := e.fbFile("fbgone")
	for _, k := range []store.FileKey{gone, bad, cdn} {
		g.Eventually(state(e, k)).Should(Equal(store.FileFailed))
		g.Expect(e.store.get(k).reason).To(Equal(store.FailNotFound))
	}
	g.Expect(e.meta.count(e.meta.lookups, "unknown")).To(Equal(1), "a 404 is not retried")
	g.Expect(e.metric(t, "omniflow_worker_files_failed_total", "reason", store.FailNotFound)).To(BeEquivalentTo(3))
}

func TestARefusedTokenPausesTheChannelUntilItsTokenChanges(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, nil)
	e.meta.token.Store("EAAnew") // Meta revoked the channel's token
	e.meta.set("wa3", &medium{data: payload(3000, 3), mime: "image/png"})
	e.meta.set("wa4", &medium{data: payload(4000, 4), mime: "image/png"})
	k3 := e.waFile("wa3", t0)
	g.Eventually(func() bool { return e.reports.last().Channels[waChannel].TokenRefusedAt != nil }).Should(BeTrue(),
		"the media report marks the channel's token as refused")
	g.Expect(e.metric(t, "omniflow_worker_files_token_refused_total", "channel", waChannel)).To(BeEquivalentTo(1))
	f := e.store.get(k3)
	g.Expect(f.state).To(Equal(store.FilePending), "the file waits")
	g.Expect(f.claims).To(Equal(0), "no attempt is spent on a refused token: the claim was given back")

	// Another file of the paused channel waits without a request.
	k4 := e.waFile("wa4", t0)
	g.Consistently(func() int { return e.meta.count(e.meta.lookups, "wa4") }, 200*time.Millisecond).Should(BeZero())
	g.Expect(e.store.get(k4).state).To(Equal(store.FilePending))

	// The token Secret changes: the channel resumes without any file failing.
	e.setToken(t, "EAAnew")
	g.Eventually(func() []string {
		e.clock.Step(time.Second)
		return []string{e.store.get(k3).state, e.store.get(k4).state}
	}).Should(Equal([]string{store.FileFetched, store.FileFetched}))
	g.Expect(e.meta.count(e.meta.lookups, "wa3")).To(Equal(2), "one refused lookup, one with the new token")
	g.Eventually(func() bool { _, ok := e.reports.last().Channels[waChannel]; return ok }).Should(BeFalse(),
		"the refusal is cleared from the report once the token changed")
}

func TestTooLargeFilesAreStoppedAtTheLimit(t *testing.T) {
	g := NewWithT(t)
	const limit = 1 << 20
	e := newEnv(t, nil)
	// Meta declares the size: refused before any download.
	e.meta.set("wabig", &medium{data: payload(16, 5), declaredSize: limit + 1})
	declared := e.waFile("wabig", t0)
	g.Eventually(state(e, declared)).Should(Equal(store.FileFailed))
	g.Expect(e.store.get(declared).reason).To(Equal(store.FailTooLarge))
	g.Expect(e.meta.count(e.meta.downloads, "wabig")).To(BeZero())

	// A CDN that declares nothing and streams 64 MiB: reading stops at the limit.
	e.meta.set("fbbig", &medium{data: payload(64<<20, 6), chunked: true, mime: "video/mp4"})
	streamed := e.fbFile("fbbig")
	g.Eventually(state(e, streamed)).Should(Equal(store.FileFailed))
	g.Expect(e.store.get(streamed).reason).To(Equal(store.FailTooLarge))
	g.Expect(e.store.get(streamed).data).To(BeEmpty(), "nothing is kept")
	// What the server managed to write before the connection closed: the limit plus
	// what the loopback socket buffers hold, far from the 64 MiB.
	g.Eventually(e.meta.served.Load).Should(BeNumerically("<", limit+8<<20))
	g.Expect(e.metric(t, "omniflow_worker_files_failed_total", "reason", store.FailTooLarge)).To(BeEquivalentTo(2))
}

func TestAWrongChecksumKeepsNoByte(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, nil)
	other := sha256.Sum256([]byte("other bytes"))
	e.meta.set("wasum", &medium{data: payload(70_000, 7), mime: "application/pdf", declaredSHA: hex.EncodeToString(other[:])})
	k := e.waFile("wasum", t0)
	g.Eventually(state(e, k)).Should(Equal(store.FileFailed))
	g.Expect(e.store.get(k).reason).To(Equal(store.FailChecksum))
	g.Expect(e.store.get(k).data).To(BeEmpty(), "the store call failed before it committed")
	g.Expect(e.meta.count(e.meta.downloads, "wasum")).To(Equal(1), "a checksum mismatch is not retried")

	// The webhook declared the sha256 unpadded, a form the stream's check does not read:
	// the store refuses the bytes (ErrChecksum), and that fails the file the same way.
	e.meta.set("wasum2", &medium{data: payload(9_000, 8), mime: "image/png"})
	k2 := store.FileKey{Platform: meta.WhatsApp, MessageID: "wamid.wasum2"}
	e.store.add(store.FetchJob{Key: k2, Channel: waChannel, MediaID: "wasum2", ReceivedAt: t0,
		SHA256: base64.RawStdEncoding.EncodeToString(other[:])})
	e.fetcher.Notify()
	g.Eventually(state(e, k2)).Should(Equal(store.FileFailed))
	g.Expect(e.store.get(k2).reason).To(Equal(store.FailChecksum))
	g.Expect(e.store.get(k2).data).To(BeEmpty())
	g.Expect(e.meta.count(e.meta.downloads, "wasum2")).To(Equal(1), "not retried either")
	g.Expect(e.metric(t, "omniflow_worker_files_failed_total", "reason", store.FailChecksum)).To(BeEquivalentTo(2))
}

func TestASlowServerTimesOutAndIsRetriedWithBackoffOnTheClock(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, func(c *Config) { c.DownloadTimeout = 100 * time.Millisecond })
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	md := &medium{data: payload(1000, 8), mime: "image/webp", block: block}
	e.meta.set("waslow", md)
	k := e.waFile("waslow", t0)
	g.Eventually(func() int { return e.store.get(k).retries }).Should(Equal(1))
	f := e.store.get(k)
	g.Expect(f.reason).To(Equal(RetryTimeout))
	g.Expect(f.state).To(Equal(store.FilePending))
	// The first retry is DefaultRetryBase later, plus up to 50% jitter.
	g.Expect(f.next).To(BeTemporally(">=", t0.Add(DefaultRetryBase)))
	g.Expect(f.next).To(BeTemporally("<=", t0.Add(DefaultRetryBase*3/2)))
	g.Expect(e.metric(t, "omniflow_worker_files_fetch_retries_total", "reason", RetryTimeout)).To(BeEquivalentTo(1))

	// Nothing happens before the retry is due; the server is fast by then.
	e.meta.mu.Lock()
	md.block = nil
	e.meta.mu.Unlock()
	e.clock.Step(DefaultRetryBase - time.Second)
	g.Consistently(state(e, k), 200*time.Millisecond).Should(Equal(store.FilePending))
	g.Expect(e.meta.count(e.meta.downloads, "waslow")).To(Equal(1))
	// The fetcher's own timer for the retry wakes it (no new commit, the poll is an hour).
	g.Eventually(func() string { e.clock.Step(time.Second); return e.store.get(k).state }).Should(Equal(store.FileFetched))
	g.Expect(e.store.get(k).next).To(BeTemporally("<=", e.clock.Now()))
}

func TestAMessengerAttachmentIsFetchedFromItsURLWithoutAToken(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, nil)
	data := payload(12345, 9)
	e.meta.set("fbimg", &medium{data: data, mime: "image/jpeg"}) // the CDN errors the test on a token
	k := e.fbFile("fbimg")
	g.Eventually(state(e, k)).Should(Equal(store.FileFetched))
	g.Expect(e.store.get(k).data).To(Equal(data))
	g.Expect(e.store.get(k).mime).To(Equal("image/jpeg"), "from the CDN's Content-Type when the webhook declared none")
	g.Expect(e.meta.count(e.meta.lookups, "fbimg")).To(BeZero(), "no Graph API lookup")
}

func TestAWhatsAppChannelWithoutTokenKeepsMetadataOnly(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, nil)
	e.setToken(t, "")
	e.meta.set("wanotoken", &medium{data: payload(10, 10)})
	k := e.waFile("wanotoken", t0)
	g.Eventually(state(e, k)).Should(Equal(store.FileMetadataOnly))
	g.Expect(e.store.get(k).reason).To(Equal(store.FailNoToken))
	g.Expect(e.meta.count(e.meta.lookups, "wanotoken")).To(BeZero())
	// Checked at the next report interval.
	g.Eventually(func() bool {
		e.clock.Step(DefaultReportInterval)
		return e.reports.last().Channels[waChannel].NoToken
	}).Should(BeTrue())
	g.Expect(e.reports.last().Channels).NotTo(HaveKey(fbChannel), "Messenger needs no token")
}

func TestAMediaIDPastItsLifetimeFailsAsExpiredWithoutARequest(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, nil)
	e.meta.set("waold", &medium{data: payload(10, 11)})
	k := e.waFile("waold", t0.Add(-MediaIDLifetime-time.Minute))
	g.Eventually(state(e, k)).Should(Equal(store.FileFailed))
	g.Expect(e.store.get(k).reason).To(Equal(store.FailExpired))
	g.Expect(e.meta.count(e.meta.lookups, "waold")).To(BeZero())
}

func TestServerErrorsSpendTheRetryBudget(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, func(c *Config) { c.MaxAttempts = 3 })
	e.meta.set("fb500", &medium{cdnStatus: http.StatusServiceUnavailable})
	k := e.fbFile("fb500")
	g.Eventually(func() string { e.stepWhenIdle(time.Minute); return e.store.get(k).state }).Should(Equal(store.FileFailed))
	g.Expect(e.store.get(k).reason).To(Equal(store.FailAttempts))
	g.Expect(e.meta.count(e.meta.downloads, "fb500")).To(Equal(3))
	g.Expect(e.metric(t, "omniflow_worker_files_fetch_retries_total", "reason", RetryServerError)).To(BeEquivalentTo(2))
}

func TestAFileErasedWhileFetchedIsDroppedQuietly(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, nil)
	block := make(chan struct{})
	e.meta.set("fberased", &medium{data: payload(100, 12), block: block})
	k := e.fbFile("fberased")
	g.Eventually(func() int { return e.meta.count(e.meta.downloads, "fberased") }).Should(Equal(1))
	e.store.mu.Lock()
	delete(e.store.files, k) // a subject erasure meanwhile
	e.store.mu.Unlock()
	close(block)
	g.Eventually(func() bool { e.fetcher.mu.Lock(); defer e.fetcher.mu.Unlock(); return len(e.fetcher.busy) == 0 }).Should(BeTrue())
	g.Expect(e.metric(t, "omniflow_worker_files_fetched_total")).To(BeZero())
	g.Expect(e.metric(t, "omniflow_worker_files_fetch_retries_total", "reason", RetryStore)).To(BeZero())
}

func TestTheReportIsWrittenOnlyWhenItChanges(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, nil)
	g.Eventually(func() int { return len(e.reports.all()) }).Should(Equal(1), "the first report at start")
	for range 5 {
		e.clock.Step(DefaultReportInterval)
	}
	g.Consistently(func() int { return len(e.reports.all()) }, 200*time.Millisecond).Should(Equal(1), "an idle worker writes nothing")

	e.meta.set("warep", &medium{data: payload(10, 13), mime: "image/jpeg"})
	k := e.waFile("warep", t0)
	g.Eventually(state(e, k)).Should(Equal(store.FileFetched))
	g.Eventually(func() int64 { e.clock.Step(DefaultReportInterval); return e.reports.last().Fetched }).Should(BeEquivalentTo(1))
	n := len(e.reports.all())
	e.clock.Step(DefaultReportInterval)
	g.Consistently(func() int { return len(e.reports.all()) }, 200*time.Millisecond).Should(Equal(n))
	g.Expect(e.reports.last().Bytes).To(BeEquivalentTo(10))
}

func TestQueueGauges(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, nil)
	e.setToken(t, "EAAother") // refused: the file stays pending
	e.waFile("wagauge", t0.Add(-time.Hour))
	g.Eventually(func() float64 {
		e.clock.Step(DefaultReportInterval)
		return e.metric(t, "omniflow_worker_files_pending")
	}).Should(BeEquivalentTo(1))
	g.Expect(e.metric(t, "omniflow_worker_files_oldest_pending_age_seconds")).To(BeNumerically(">=", time.Hour.Seconds()))
}

func TestAStoreFailureIsRetried(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, nil)
	e.store.storeErr = errBoom
	e.meta.set("fbstore", &medium{data: payload(10, 14)})
	k := e.fbFile("fbstore")
	g.Eventually(func() string { return e.store.get(k).reason }).Should(Equal(RetryStore))
	g.Expect(e.store.get(k).state).To(Equal(store.FilePending))
}

func TestFetchingYieldsToWebhookDeliveries(t *testing.T) {
	g := NewWithT(t)
	var busy atomic.Bool
	busy.Store(true)
	e := newEnv(t, func(c *Config) { c.Busy = busy.Load })
	for i := range 3 {
		e.meta.set(fmt.Sprintf("fbbusy%d", i), &medium{data: payload(100, byte(i))})
	}
	keys := []store.FileKey{e.fbFile("fbbusy0"), e.fbFile("fbbusy1"), e.fbFile("fbbusy2")}
	fetched := func() int {
		n := 0
		for _, k := range keys {
			if e.store.get(k).state == store.FileFetched {
				n++
			}
		}
		return n
	}
	g.Consistently(fetched, 200*time.Millisecond).Should(BeZero(), "no download starts while deliveries are answered")
	// Sustained traffic: one file per MaxYield.
	e.clock.Step(DefaultMaxYield)
	g.Eventually(fetched).Should(Equal(1))
	g.Consistently(fetched, 100*time.Millisecond).Should(Equal(1))
	// Traffic stops: the rest goes at once.
	busy.Store(false)
	e.fetcher.Notify()
	g.Eventually(fetched).Should(Equal(3))
}

func TestAnIdleFetcherDoesNotReadTheStoresFigures(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t, nil)
	g.Eventually(func() int { return len(e.reports.all()) }).Should(Equal(1))
	reads := e.store.statsReads.Load()
	for range 5 {
		e.clock.Step(DefaultReportInterval)
	}
	g.Consistently(e.store.statsReads.Load, 200*time.Millisecond).Should(Equal(reads), "nothing changed: no read")

	e.meta.set("fbstats", &medium{data: payload(10, 15)})
	k := e.fbFile("fbstats")
	g.Eventually(state(e, k)).Should(Equal(store.FileFetched))
	g.Eventually(func() int64 { e.clock.Step(DefaultReportInterval); return e.reports.last().Fetched }).Should(BeEquivalentTo(1),
		"a fetch marks the figures stale: read at the next check")
	reads = e.store.statsReads.Load()
	// Erasure and retention do not tell the fetcher: the figures are read again after a while.
	e.clock.Step(statsRefresh)
	g.Eventually(e.store.statsReads.Load).Should(BeNumerically(">", reads))
}
