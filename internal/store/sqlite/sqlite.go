// Package sqlite is the embedded store backend: one SQLite file per tenant, written by a
// single goroutine that commits concurrent deliveries in groups.
//
// Durability: WAL with synchronous=NORMAL, and Commit answers its caller only after the
// COMMIT of the group holding its batch and a sync of the WAL that followed it (walsync.go).
// Throughput: the writer runs the next group's SQL while the previous groups' sync runs,
// and the deliveries that arrive meanwhile share the next sync, so the cost per delivery
// falls as concurrency rises instead of collapsing to one fsync per request.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	msqlite "modernc.org/sqlite" // pure-Go driver: CGO_ENABLED=0 builds

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// FileName is the database file inside the data directory.
const FileName = "omniflow.db"

// Observer receives one call per committed group (for the worker's metrics), once the
// group is on disk, from the goroutine that synced it: it must be quick. took runs from
// the start of the group's transaction to the end of its sync.
type Observer interface {
	ObserveCommit(groupSize int, took time.Duration, err error)
}

// Options tune a Store.
type Options struct {
	Observer Observer
	// MaxGroup caps how many requests share one transaction (default 256), which bounds
	// the latency a request can add to the others in its group.
	MaxGroup int
	// ReadOnly opens an existing store for export only: no schema changes, no writer.
	ReadOnly bool
	// EraseBatch bounds the rows per table one erasure transaction deletes (default
	// DefaultEraseBatch; see Erase).
	EraseBatch int
	// BeforeWALSync, if set, runs on the syncer goroutine after groups were committed
	// and before the WAL sync that lets their callers be answered. A test failpoint:
	// blocking in it holds every answer while the writer keeps committing.
	BeforeWALSync func()
	// Keys seal documents and file bytes and hash identifiers (docs/encryption.md);
	// nil stores in clear. Every operation takes one store.Sealing from it and uses it
	// throughout.
	Keys *store.Keys
}

// Store is the SQLite backend of store.Store.
type Store struct {
	dir      string // the data directory: the database and FilesDir
	w, r     *sql.DB
	stmts    map[string]*sql.Stmt
	opts     Options
	reqs     chan *request
	stopped  chan struct{}
	mu       sync.RWMutex // guards closed against concurrent submit/Close
	closed   bool
	readOnly bool
	// contacts caches the stored contact rows by key. Only the writer goroutine touches
	// it, so it needs no lock; it lets an unchanged contact cost no SQL at all.
	contacts map[contactKey]meta.Contact
	// hasTombstones is false while no message was ever deleted, so that inserts can skip
	// the tombstone check. Writer goroutine only.
	hasTombstones bool

	// wal answers committed requests once the WAL is synced (walsync.go).
	wal *walSyncer

	// Checkpoints run on their own connection, off the writer's path (checkpointer).
	ckpt     *sql.DB
	ckptKick chan struct{}
	ckptDone chan struct{}
	// ckptMu keeps the background checkpoint out of the way of a TRUNCATE checkpoint
	// (compactAfterMigration), which cannot run while another checkpoint does.
	ckptMu  sync.Mutex
	catchUp atomic.Bool // the WAL is large: the writer should finish the checkpoint

	optimized time.Time  // when the planner statistics were last refreshed (writer only)
	group     []*request // the group being filled, reused (writer only)

	keys *store.Keys
	// mixed: opened with Keys while identifiers stored in clear may remain (reseal.go).
	mixed atomic.Bool
}

var (
	_ store.Store     = (*Store)(nil)
	_ store.FileStore = (*Store)(nil)
)

type op func(ctx context.Context, tx *txn) error

type request struct {
	op op
	// alone, if set instead of op, runs by itself on the writer's connection outside
	// any transaction, once the groups before it are committed (VACUUM, which no
	// transaction may hold).
	alone func(ctx context.Context, db *sql.DB) error
	err   error // the op's result, set by the writer
	done  chan error
}

func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	// COMMIT writes the WAL without syncing it; the store syncs it before answering
	// (walsync.go). Checkpoints still sync the WAL first and the database after.
	q.Add("_pragma", "synchronous(NORMAL)")
	// The per-request savepoints keep a sub-journal; on a temp file that is one write
	// syscall per touched page and was half the writer's time. The WAL stays on disk.
	q.Add("_pragma", "temp_store(MEMORY)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		// Take the write lock at BEGIN: the single writer should never find out at its
		// first INSERT that an export process holds it.
		q.Set("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode()
}

// writerDSN is dsn for the writer connection: checkpoints are left to the checkpointer.
func writerDSN(path string) string {
	q := url.Values{}
	q.Add("_pragma", "wal_autocheckpoint(0)")
	// A page cache of writerCacheKiB rather than SQLite's 2 MiB. Indexes on keyed hashes
	// (a sealed store's message ids) and on subjects take each new row to a leaf of
	// their own: with a small cache those leaves are read back from the file, and a
	// group's transaction that dirties more pages than the cache holds spills them to
	// the WAL before its COMMIT writes them again (docs/encryption.md, SQLite's cost).
	q.Add("_pragma", fmt.Sprintf("cache_size(-%d)", writerCacheKiB))
	return dsn(path, false) + "&" + q.Encode()
}

// writerCacheKiB is the writer connection's page cache, allocated as pages are used: a
// tenant whose store is smaller never takes it all.
const writerCacheKiB = 16 << 10

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	// Sync with fdatasync(2), as SQLite's own Linux builds do: it flushes the data and
	// the size needed to read it back, so an acknowledged delivery is as durable as with
	// fsync(2), without waiting for the timestamp update in the file system's journal.
	// The transpiled library defaults to fsync (its checkpoints sync the WAL and the
	// database); the switch is process-wide and a no-op where fdatasync does not exist.
	// The store's own WAL sync (datasync) makes the same call.
	_, _ = msqlite.Fdatasync(true)
	if opts.MaxGroup <= 0 {
		opts.MaxGroup = 256
	}
	if opts.EraseBatch <= 0 {
		opts.EraseBatch = DefaultEraseBatch
	}
	path := filepath.Join(dir, FileName)
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("open store read-only: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	s := &Store{dir: dir, opts: opts, readOnly: opts.ReadOnly, stmts: map[string]*sql.Stmt{}, contacts: map[contactKey]meta.Contact{}, keys: opts.Keys}
	var err error
	if s.r, err = sql.Open("sqlite", dsn(path, true)); err != nil {
		return nil, fmt.Errorf("open sqlite reader: %w", err)
	}
	s.r.SetMaxOpenConns(4)
	if opts.ReadOnly {
		if err := s.r.Ping(); err != nil {
			s.r.Close()
			return nil, fmt.Errorf("open sqlite reader: %w", err)
		}
		if err := s.loadMessageIDForm(s.r, false); err != nil {
			s.r.Close()
			return nil, err
		}
		if err := s.loadMixed(s.r); err != nil {
			s.r.Close()
			return nil, err
		}
		return s, nil
	}
	if s.w, err = sql.Open("sqlite", writerDSN(path)); err != nil {
		s.r.Close()
		return nil, fmt.Errorf("open sqlite writer: %w", err)
	}
	// One connection: SQLite has one writer anyway, and prepared statements stay on it.
	s.w.SetMaxOpenConns(1)
	s.w.SetConnMaxIdleTime(0)
	s.w.SetConnMaxLifetime(0)
	if err := s.init(); err != nil {
		s.w.Close()
		s.r.Close()
		return nil, err
	}
	if s.wal, err = openWALSyncer(path, opts.Observer, opts.BeforeWALSync); err != nil {
		s.w.Close()
		s.r.Close()
		return nil, err
	}
	if s.ckpt, err = sql.Open("sqlite", dsn(path, false)); err != nil {
		_ = s.wal.stop()
		s.w.Close()
		s.r.Close()
		return nil, fmt.Errorf("open sqlite checkpointer: %w", err)
	}
	s.ckpt.SetMaxOpenConns(1)
	s.ckptKick = make(chan struct{}, 1)
	s.ckptDone = make(chan struct{})
	go s.checkpointer()
	s.reqs = make(chan *request, opts.MaxGroup)
	s.stopped = make(chan struct{})
	go s.run()
	return s, nil
}

func (s *Store) init() error {
	if _, err := s.w.Exec(schema + leadsSchema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if err := migrate(s.w); err != nil {
		return err
	}
	if err := s.initEncryption(); err != nil {
		return err
	}
	if s.keys.Enabled() {
		// What a delete or an update frees is overwritten with zeros, so that a record
		// resealed or erased leaves no clear copy in a free page of the file.
		if _, err := s.w.Exec("PRAGMA secure_delete = ON"); err != nil {
			return fmt.Errorf("secure_delete: %w", err)
		}
	}
	if _, err := s.w.Exec(store.RetentionIndexes + store.SubjectIndexes + fileIndexes); err != nil {
		return fmt.Errorf("create retention, subject and file indexes: %w", err)
	}
	if err := s.sweepFiles(); err != nil {
		return err
	}
	var mode string
	var sync int
	if err := s.w.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal_mode: %w", err)
	}
	if err := s.w.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil {
		return fmt.Errorf("read synchronous: %w", err)
	}
	// Refuse to run without the durability the acknowledgements promise: WAL, whose
	// commits the syncer makes durable, and NORMAL, under which checkpoints sync the WAL
	// before copying it (OFF would not) and commits leave the sync to the syncer (FULL
	// would sync twice).
	if mode != "wal" || sync != 1 {
		return fmt.Errorf("sqlite durability settings not in force: journal_mode=%s synchronous=%d", mode, sync)
	}
	if err := s.w.QueryRow("SELECT EXISTS (SELECT 1 FROM tombstones)").Scan(&s.hasTombstones); err != nil {
		return fmt.Errorf("read tombstones: %w", err)
	}
	// Planner statistics: SQLite never gathers them by itself, and without them it picks
	// indexes by rules of thumb. At open, as SQLite's documentation recommends for
	// long-lived connections, analyze what has never been (0x10000: every table, cheaply,
	// with a bounded sample); then PRAGMA optimize hourly and at close (optimizeDue).
	if err := refreshStats(context.Background(), s.w, "PRAGMA optimize=0x10002"); err != nil {
		return err
	}
	s.optimized = time.Now()
	for name, q := range statements {
		st, err := s.w.Prepare(q)
		if err != nil {
			return fmt.Errorf("prepare %s: %w", name, err)
		}
		s.stmts[name] = st
	}
	return nil
}

// migrate adds the columns a store from an earlier version lacks, in one transaction.
func migrate(db *sql.DB) error {
	tx, err := db.Begin()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, m := range migrations {
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`, m.table, m.column).Scan(&n); err != nil {
			return fmt.Errorf("migrate %s.%s: %w", m.table, m.column, err)
		}
		if n == 0 {
			if _, err := tx.Exec(m.add); err != nil {
				return fmt.Errorf("migrate %s.%s: %w", m.table, m.column, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Pragmas reports the writer connection's journal mode and synchronous level (tests).
func (s *Store) Pragmas() (journalMode string, synchronous int, err error) {
	if s.w == nil {
		return "", 0, store.ErrReadOnly
	}
	if err := s.w.QueryRow("PRAGMA journal_mode").Scan(&journalMode); err != nil {
		return "", 0, fmt.Errorf("read journal_mode: %w", err)
	}
	if err := s.w.QueryRow("PRAGMA synchronous").Scan(&synchronous); err != nil {
		return "", 0, fmt.Errorf("read synchronous: %w", err)
	}
	return journalMode, synchronous, nil
}

// submit queues op for the writer and waits until its group is committed and on disk
// (or failed): every write the store acknowledges, deliveries or not, goes through it.
// If ctx ends first the caller stops waiting, but a queued op is still committed: that
// is harmless, since a delivery answered with an error is redelivered and deduplicated.
func (s *Store) submit(ctx context.Context, o op) error {
	return s.send(ctx, &request{op: o, done: make(chan error, 1)})
}

// send queues r for the writer and waits for its answer.
func (s *Store) send(ctx context.Context, r *request) error {
	if s.readOnly {
		return store.ErrReadOnly
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.ErrClosed
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.mu.RUnlock()
		return fmt.Errorf("queue commit: %w", ctx.Err())
	}
	s.mu.RUnlock()
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("wait for commit: %w", ctx.Err())
	}
}

// submitSealed is submit for an operation that seals, opens or hashes: it takes the
// Sealing in force (failing with store.ErrKeyUnavailable when the ring is gone,
// before anything is written) and hands it to the operation.
func (s *Store) submitSealed(ctx context.Context, o op) error {
	sl, err := s.keys.Sealing()
	if err != nil {
		return err
	}
	return s.submit(ctx, func(ctx context.Context, t *txn) error {
		t.sl = sl
		return o(ctx, t)
	})
}

// run is the single writer. It applies requests in a group's transaction as they
// arrive, commits the group once the syncer has taken the previous one (or the group is
// full), hands it to the syncer and starts the next (walsync.go).
func (s *Store) run() {
	defer close(s.stopped)
	for r := range s.reqs {
		for r != nil {
			if r.alone != nil {
				s.wal.waitTurn()
				s.runAlone(r)
				break
			}
			// A request that must run alone ends the group; it runs next.
			r = s.runGroup(r)
			s.afterCommit()
			if time.Since(s.optimized) >= OptimizeInterval {
				s.optimize()
			}
		}
	}
}

// runAlone runs a request that needs the writer's connection outside a transaction
// and answers it: what it writes is made durable by the request itself (a TRUNCATE
// checkpoint syncs the database). Writer goroutine.
func (s *Store) runAlone(r *request) {
	r.done <- r.alone(context.Background(), s.w)
}

// submitAlone queues a request that runs alone on the writer's connection (see
// request.alone) and waits for it.
func (s *Store) submitAlone(ctx context.Context, f func(ctx context.Context, db *sql.DB) error) error {
	return s.send(ctx, &request{alone: f, done: make(chan error, 1)})
}

// OptimizeInterval is how often the writer refreshes the planner statistics (PRAGMA
// optimize, which re-analyzes only the tables that changed much since, on a bounded
// sample: milliseconds, between two groups).
var OptimizeInterval = time.Hour

// optimize runs PRAGMA optimize on the writer connection. Writer goroutine only (or
// after it stopped). A failure is retried at the next interval: statistics are advice.
func (s *Store) optimize() {
	_ = refreshStats(context.Background(), s.w, "PRAGMA optimize")
	s.optimized = time.Now()
}

// Optimize refreshes the planner statistics now (tests, and a store just filled in bulk).
func (s *Store) Optimize(ctx context.Context) error {
	return s.submit(ctx, func(ctx context.Context, t *txn) error {
		// In the group's transaction: the writer has one connection, which it holds.
		return refreshStats(ctx, t.tx, "PRAGMA optimize=0x10002")
	})
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// refreshStats runs pragma (a PRAGMA optimize) and keeps only the row counts it gathers
// (sqlite_stat1). The driver's SQLite is built with STAT4, whose value samples make
// SQLite prepare a statement again each time a value bound to an indexed column changes,
// which doubled the cost of every retention statement. The store's plans do not need
// value samples: they follow identifier indexes by construction (see plans.go).
func refreshStats(ctx context.Context, db execer, pragma string) error {
	if _, err := db.ExecContext(ctx, pragma); err != nil {
		return fmt.Errorf("optimize: %w", err)
	}
	res, err := db.ExecContext(ctx, `DELETE FROM sqlite_stat4 WHERE EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat4')`)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil // nothing analyzed yet
		}
		return fmt.Errorf("optimize: drop value samples: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		// Statistics are read when the schema is loaded: load them again.
		if _, err := db.ExecContext(ctx, "ANALYZE sqlite_schema"); err != nil {
			return fmt.Errorf("optimize: reload statistics: %w", err)
		}
	}
	return nil
}

// Checkpoints. SQLite's automatic checkpoint runs inside the COMMIT that crosses the
// threshold: the writer would copy ~1000 pages into the database file and fsync it while
// every queued delivery waits. Instead the writer connection has wal_autocheckpoint=0,
// and a checkpointer goroutine runs PASSIVE checkpoints on a connection of its own, which
// copy committed frames concurrently with the writer. The WAL can only start over when a
// checkpoint has copied all of it; under continuous load the checkpointer is always a few
// commits behind, so once the WAL is large the writer itself copies that short remainder
// between two groups, and its next commit restarts the WAL at its beginning.
// Variables for tests.
var (
	ckptInterval       = 50 * time.Millisecond // at most one background checkpoint per interval
	walCatchUp   int64 = 4000                  // WAL frames (~16 MB) past which the writer catches up
)

// afterCommit wakes the checkpointer and, when it found the WAL large, finishes the
// checkpoint on the writer connection. Writer goroutine only.
func (s *Store) afterCommit() {
	select {
	case s.ckptKick <- struct{}{}:
	default:
	}
	if !s.catchUp.Load() {
		return
	}
	// The checkpointer has just copied nearly everything and sleeps: what is left is a
	// few groups' frames. A busy checkpoint reports -1 frames, and is retried next time.
	if log, done, err := checkpoint(s.w); err == nil && log >= 0 && log == done {
		s.catchUp.Store(false)
	}
}

func checkpoint(db *sql.DB) (log, done int64, err error) {
	var busy int
	if err := db.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done); err != nil {
		return 0, 0, fmt.Errorf("checkpoint: %w", err)
	}
	return log, done, nil
}

func (s *Store) checkpointer() {
	defer close(s.ckptDone)

	for range s.ckptKick {
		// A failed checkpoint is retried at the next kick; the data is safe in the WAL.
		s.ckptMu.Lock()
		log, _, err := checkpoint(s.ckpt)
		s.ckptMu.Unlock()
		if err == nil && log >= walCatchUp {
			s.catchUp.Store(true)
		}
		time.Sleep(ckptInterval)
	}
}

// runGroup runs first and the requests that follow it in one transaction: those queued,
// and while the previous group still waits for the syncer, those that arrive meanwhile,
// up to MaxGroup. It commits the group, hands it to the syncer, which answers its
// requests once the WAL is on disk, and returns the request that must run alone if one
// ended the group. Writer goroutine.
func (s *Store) runGroup(first *request) (alone *request) {
	ctx := context.Background() // a request's own ctx must not abort the others' group
	start := time.Now()
	group := append(s.group[:0], first)
	defer func() { s.group = group[:0] }()
	t, err := s.begin(ctx)
	if err == nil {
		err = first.op(ctx, t)
	}
fill:
	for err == nil && len(group) < s.opts.MaxGroup {
		var r *request
		select {
		case r = <-s.reqs:
		default:
			if s.wal.idle() {
				break fill // nothing queued and the syncer is free: commit now
			}
			select {
			case r = <-s.reqs:
			case <-s.wal.turn:
				continue // look again: queued requests first, then the syncer
			}
		}
		switch {
		case r == nil:
			break fill // closed: Close waits for this group
		case r.alone != nil:
			alone = r
			break fill
		}
		group = append(group, r)
		err = r.op(ctx, t)
	}
	if t != nil {
		err = t.finish(err)
	}
	if err == nil || len(group) == 1 {
		for _, r := range group {
			r.err = err
		}
		s.wal.hand(committed{reqs: slices.Clone(group), start: start, err: err})
		return alone
	}
	// The group failed. Batches are validated before they are queued, so this is rare;
	// run each request in a transaction of its own so that one bad request does not fail
	// its neighbours. (Savepoints per request would do the same on the happy path, at the
	// cost of a sub-journal for every request.)
	for _, r := range group {
		start := time.Now()
		r.err = s.inTx(ctx, func(t *txn) error { return r.op(ctx, t) })
		s.wal.hand(committed{reqs: []*request{r}, start: start, err: r.err})
	}
	return alone
}

// begin starts a transaction on the writer connection.
func (s *Store) begin(ctx context.Context) (*txn, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &txn{tx: tx, s: s, cache: map[string]*sql.Stmt{}, pending: map[contactKey]*meta.Contact{}}, nil
}

// finish commits t if err is nil and rolls it back otherwise, and returns the result.
func (t *txn) finish(err error) error {
	if err != nil {
		_ = t.tx.Rollback()
		return err
	}
	if err := t.tx.Commit(); err != nil {
		// Whether the commit reached the disk is unknown: forget every cached contact.
		clear(t.s.contacts)
		return fmt.Errorf("commit: %w", err)
	}
	t.commitCache()
	return nil
}

func (s *Store) inTx(ctx context.Context, fn func(*txn) error) error {
	t, err := s.begin(ctx)
	if err != nil {
		return err
	}
	return t.finish(fn(t))
}

// Commit implements store.Store.
func (s *Store) Commit(ctx context.Context, b *meta.Batch) (store.CommitResult, error) {
	if err := store.Validate(b); err != nil {
		return store.CommitResult{}, err
	}
	// Encode documents here, on the caller's goroutine, to keep the writer's critical
	// path down to SQL.
	sl, err := s.keys.Sealing()
	if err != nil {
		return store.CommitResult{}, err
	}
	p, err := prepare(b, sl)
	if err != nil {
		return store.CommitResult{}, err
	}
	var res store.CommitResult
	var unref []string // bytes of the files of unsent messages
	err = s.submit(ctx, func(ctx context.Context, t *txn) error {
		res = store.CommitResult{}
		t.sl = p.sl
		var err error
		unref, err = t.deletingFiles(func() error { return t.apply(ctx, p, &res) })
		return err
	})
	if err != nil {
		return store.CommitResult{}, err
	}
	s.removeUnreferenced(ctx, unref)
	return res, nil
}

// Close stops accepting commits, lets the writer finish everything queued, and closes.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.reqs != nil {
		close(s.reqs)
	}
	s.mu.Unlock()
	var errs []error
	if s.stopped != nil {
		<-s.stopped
		errs = append(errs, s.wal.stop()) // answers the writer's last groups
		close(s.ckptKick)
		<-s.ckptDone
	}
	for _, st := range s.stmts {
		errs = append(errs, st.Close())
	}
	if s.w != nil {
		if s.stopped != nil {
			s.optimize() // the writer has stopped: statistics for the next open
		}
		// A checkpoint folds the WAL into the main file so a stopped store is one file.
		_, err := s.w.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
		errs = append(errs, err, s.w.Close())
	}
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.Close())
	}
	errs = append(errs, s.r.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}
