package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The media phases: the webhook path's throughput with media deliveries against text
// deliveries, in the same run against the same durable worker (fetching must stay off
// the hot path: target within 10%), and the worker's fetch throughput against a plain
// HTTP download of the same files from the same local server.

// mediaConfig are the media phases' settings.
type mediaConfig struct {
	server        string // base URL of `loadgen media-server`; empty skips the phases
	token         string // the access token the server accepts (the channel's)
	size          int    // bytes per file in the webhook phases
	maxDeliveries int64  // cap of each webhook phase
	fetchFiles    int    // files of the fetch throughput phase
	fetchSize     int    // bytes per file of that phase
	concurrency   int    // the worker's --media-concurrency, for the plain download
}

// mediaID names a file of size bytes: the server derives its bytes from the id.
func mediaID(size int, n int64) string { return fmt.Sprintf("s%dn%d", size, n) }

// mediaBody is a WhatsApp delivery of one image message whose media id the media
// server serves.
func mediaBody(phoneNumberID string, users int64, seq *atomic.Int64, size int) []byte {
	id := seq.Add(1)
	user := 447700000000 + id%max(users, 1)
	return fmt.Appendf(nil, `{"object":"whatsapp_business_account","entry":[{"id":"109876543210987","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001234","phone_number_id":%q},"contacts":[{"profile":{"name":"Customer %d"},"wa_id":"%d"}],"messages":[{"from":"%d","id":"wamid.MEDIA%d","timestamp":"%d","type":"image","image":{"id":%q,"mime_type":"image/jpeg","caption":"Photo of order %d"}}]},"field":"messages"}]}]}`,
		phoneNumberID, user%100000, user, user, id, time.Now().Unix(), mediaID(size, id), id)
}

// mediaContent is the content of a media id: its id, then bytes of a fixed random block
// (distinct per id, so that the store cannot deduplicate them).
type mediaContent struct {
	mu     sync.Mutex
	blocks map[int][]byte
}

func (m *mediaContent) of(id string) ([]byte, error) {
	s, _, ok := strings.Cut(strings.TrimPrefix(id, "s"), "n")
	size, err := strconv.Atoi(s)
	if !ok || err != nil || size < len(id) || size > 64<<20 {
		return nil, errors.New("unknown media id")
	}
	m.mu.Lock()
	block := m.blocks[size]
	if block == nil {
		block = make([]byte, size)
		r := rand.NewChaCha8([32]byte{byte(size)})
		_, _ = r.Read(block)
		m.blocks[size] = block
	}
	m.mu.Unlock()
	out := make([]byte, size)
	copy(out, block)
	copy(out, id)
	return out, nil
}

// serveMedia answers as the Graph API (GET /<version>/<media-id>) and Meta's lookaside
// CDN (GET /cdn/<media-id>), both only with the bearer token, on a loopback address,
// and prints its base URL.
func serveMedia(listen, token string, out io.Writer) error {
	if !strings.HasPrefix(listen, "127.0.0.1:") && !strings.HasPrefix(listen, "localhost:") {
		return fmt.Errorf("--listen %q: loopback only", listen)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	base := "http://" + ln.Addr().String()
	content := &mediaContent{blocks: map[int][]byte{}}
	mux := http.NewServeMux()
	// media answers 401 without the token and 404 for an id it does not serve, as
	// Meta's Graph API and CDN do; ok says the caller may answer with data.
	media := func(w http.ResponseWriter, r *http.Request) (data []byte, ok bool) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			return nil, false
		}
		data, err := content.of(r.PathValue("id"))
		if err != nil {
			w.WriteHeader(http.StatusNotFound)
			return nil, false
		}
		return data, true
	}
	mux.HandleFunc("GET /{version}/{id}", func(w http.ResponseWriter, r *http.Request) {
		data, ok := media(w, r)
		if !ok {
			return
		}
		sum := sha256.Sum256(data)
		_ = json.NewEncoder(w).Encode(map[string]any{"messaging_product": "whatsapp", "id": r.PathValue("id"),
			"mime_type": "image/jpeg", "sha256": base64.StdEncoding.EncodeToString(sum[:]), "file_size": len(data),
			"url": base + "/cdn/" + r.PathValue("id")})
	})
	mux.HandleFunc("GET /cdn/{id}", func(w http.ResponseWriter, r *http.Request) {
		data, ok := media(w, r)
		if !ok {
			return
		}
		w.Header().Set("Content-Type", "image/jpeg")
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		_, _ = w.Write(data)
	})
	fmt.Fprintln(out, base)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// workerMetrics reads the worker's counters of fetched and failed files.
func workerMetrics(client *http.Client, base string) (fetched, failed float64, err error) {
	resp, err := client.Get(strings.TrimSuffix(base, "/") + "/metrics")
	if err != nil {
		return 0, 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	fetches := false
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, perr := strconv.ParseFloat(value, 64)
		switch {
		case perr != nil:
		case name == "omniflow_worker_files_fetched_total":
			fetched, fetches = v, true
		case strings.HasPrefix(name, "omniflow_worker_files_failed_total{"):
			failed += v
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("metrics: %w", err)
	}
	if !fetches {
		return 0, 0, errors.New("the worker does not fetch media (no omniflow_worker_files_fetched_total): its store keeps no file bytes, or --media-fetch=false")
	}
	return fetched, failed, nil
}

// waitFiles waits until the worker has fetched or failed want files in all, and
// returns when; it gives up after limit.
func waitFiles(client *http.Client, base string, want float64, limit time.Duration) (float64, error) {
	deadline := time.Now().Add(limit)
	for {
		fetched, failed, err := workerMetrics(client, base)
		if err != nil {
			return 0, err
		}
		if fetched+failed >= want {
			if failed > 0 {
				return fetched, fmt.Errorf("%.0f files failed", failed)
			}
			return fetched, nil
		}
		if time.Now().After(deadline) {
			return fetched, fmt.Errorf("%.0f of %.0f files after %s", fetched+failed, want, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mediaPhases runs the media phases against the durable worker.
func mediaPhases(c config, client *http.Client, out io.Writer, seq *atomic.Int64) (bool, error) {
	m := c.media
	endpoint := strings.TrimSuffix(c.durable, "/") + "/webhooks/meta/" + c.channel
	pc := c
	pc.maxDeliveries = m.maxDeliveries
	fmt.Fprintf(out, "media: webhook path with one image per delivery (%d KiB, fetched by the worker meanwhile) against text, batch 1, at most %d deliveries each\n",
		m.size>>10, m.maxDeliveries)
	fetched0, failed0, err := workerMetrics(client, c.durable)
	if err != nil {
		return false, err
	}
	// Text and media alternate twice (ABAB) and each keeps its better run: a machine
	// whose load drifts during the run favours neither. A text phase starts only once
	// the files of the media phase before it are stored, so that it runs without
	// fetching, and the media phase with it.
	var text, media result
	var mediaAcked int64
	for round := range 2 {
		t, err := phaseOf(pc, client, endpoint, c.durablePID, 0, 1, func() []byte { return body(c.phoneNumberID, 1, c.users, seq) })
		if err != nil {
			return false, fmt.Errorf("text phase: %w", err)
		}
		start := time.Now()
		md, err := phaseOf(pc, client, endpoint, c.durablePID, 0, 1, func() []byte { return mediaBody(c.phoneNumberID, c.users, seq, m.size) })
		if err != nil {
			return false, fmt.Errorf("media phase: %w", err)
		}
		mediaAcked += md.acked
		for _, r := range []struct {
			name string
			r    result
		}{{"text", t}, {"media", md}} {
			fmt.Fprintf(out, "%-9s %5d %12.0f %12s %9s %9s %7d %10s %10s %4.0f%%\n", r.name, 1, r.r.rate(), "-",
				r.r.pct(0.50).Round(10*time.Microsecond), r.r.pct(0.99).Round(10*time.Microsecond), r.r.errors,
				perDelivery(r.r.cost.client, true), perDelivery(r.r.cost.server, r.r.cost.serverKnown), 100*r.r.cost.busy)
		}
		if t.rate() > text.rate() || text.deliveries == 0 {
			text = t
		}
		if md.rate() > media.rate() || media.deliveries == 0 {
			media = md
		}
		if _, err := waitFiles(client, c.durable, fetched0+failed0+float64(mediaAcked), 10*time.Minute); err != nil {
			return false, fmt.Errorf("media phase's files: %w", err)
		}
		took := time.Since(start)
		fmt.Fprintf(out, "media round %d: its %d files stored %s after the phase began (%.0f files/s over the phase and its backlog)\n",
			round+1, md.acked, took.Round(10*time.Millisecond), float64(md.acked)/took.Seconds())
	}
	ratio := media.rate() / text.rate()
	ok := ratio >= 0.9 && media.errors == 0
	fmt.Fprintf(out, "media: ratio media/text %.2f (target >= 0.90: %s); worker CPU per delivery %s with media, %s without\n\n",
		ratio, yesNo(ratio >= 0.9), perDelivery(media.cost.server, media.cost.serverKnown), perDelivery(text.cost.server, text.cost.serverKnown))

	okFetch, err := fetchThroughput(c, client, out, seq)
	return ok && okFetch, err
}

// fetchThroughput posts fetchFiles deliveries with a file of fetchSize each and times
// the worker until every file is stored, then downloads the same files plainly (lookup
// and download, bytes discarded) with the worker's concurrency from the same server.
func fetchThroughput(c config, client *http.Client, out io.Writer, seq *atomic.Int64) (bool, error) {
	m := c.media
	endpoint := strings.TrimSuffix(c.durable, "/") + "/webhooks/meta/" + c.channel
	fetched0, failed0, err := workerMetrics(client, c.durable)
	if err != nil {
		return false, err
	}
	ids := make([]string, 0, m.fetchFiles)
	start := time.Now()
	for range m.fetchFiles {
		b := mediaBody(c.phoneNumberID, c.users, seq, m.fetchSize)
		ids = append(ids, mediaID(m.fetchSize, seq.Load()))
		if code, err := send(client, endpoint, []byte(c.secret), b); err != nil || code != http.StatusOK {
			return false, fmt.Errorf("fetch phase delivery: status %d, %v", code, err) //nolint:errorlint // err is nil when the status is the failure
		}
	}
	if _, err := waitFiles(client, c.durable, fetched0+failed0+float64(m.fetchFiles), 10*time.Minute); err != nil {
		return false, fmt.Errorf("fetch phase: %w", err)
	}
	worker := time.Since(start)

	start = time.Now()
	if err := plainDownload(client, c.media, ids); err != nil {
		return false, err
	}
	plain := time.Since(start)
	mb := float64(m.fetchFiles*m.fetchSize) / (1 << 20)
	fmt.Fprintf(out, "fetch: %d files of %d KiB, %d at once\n", m.fetchFiles, m.fetchSize>>10, m.concurrency)
	fmt.Fprintf(out, "%-14s %10s %10s %10s\n", "", "seconds", "files/s", "MiB/s")
	for _, r := range []struct {
		name string
		d    time.Duration
	}{{"worker", worker}, {"plain HTTP", plain}} {
		fmt.Fprintf(out, "%-14s %10.2f %10.0f %10.1f\n", r.name, r.d.Seconds(), float64(m.fetchFiles)/r.d.Seconds(), mb/r.d.Seconds())
	}
	fmt.Fprintf(out, "fetch: worker/plain %.2f (the worker also stores each file durably: hashed, fsynced, renamed)\n\n", plain.Seconds()/worker.Seconds())
	return true, nil
}

// plainDownload fetches ids as the worker does, lookup then download with the token,
// concurrency at once, and discards the bytes.
func plainDownload(client *http.Client, m mediaConfig, ids []string) error {
	jobs := make(chan string)
	errs := make(chan error, m.concurrency)
	var wg sync.WaitGroup
	for range m.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				if err := plainOne(client, m, id); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for _, id := range ids {
		jobs <- id
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func plainOne(client *http.Client, m mediaConfig, id string) error {
	get := func(url string) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return nil, fmt.Errorf("build request: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+m.token)
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("get: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("get %s: status %d", id, resp.StatusCode)
		}
		return resp, nil
	}
	resp, err := get(strings.TrimSuffix(m.server, "/") + "/v24.0/" + id)
	if err != nil {
		return err
	}
	var info struct {
		URL string `json:"url"`
	}
	err = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("lookup %s: %w", id, err)
	}
	if resp, err = get(info.URL); err != nil {
		return err
	}
	defer resp.Body.Close()
	h := sha256.New() // as the worker checks it
	if _, err := io.Copy(h, resp.Body); err != nil {
		return fmt.Errorf("download %s: %w", id, err)
	}
	return nil
}
