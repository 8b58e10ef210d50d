// Package postgres is the scale-out store backend: one PostgreSQL database per tenant,
// shared by every worker replica of that tenant.
//
// Durability: a delivery is acknowledged only after its transaction's COMMIT returned,
// and Open (and every new pooled connection) refuses a session whose synchronous_commit
// is weaker than on, or a server running with fsync off: either would let COMMIT return
// before the records are on disk.
//
// Concurrency: unlike SQLite's single writer, each Commit is its own transaction on a
// pooled connection, called from many HTTP handlers of several replicas at once. What
// PostgreSQL makes atomic by itself (INSERT ... ON CONFLICT for messages, files,
// statuses and receipts) needs nothing more. Two things read before they write and need
// locks, taken as transaction-scoped advisory locks (released by COMMIT or ROLLBACK,
// never leaked): contact merges (locker, upsertContact) and a message racing its own
// deletion (lockMessages). Locks and rows are taken in a fixed order so that
// concurrent deliveries do not deadlock; what remains is retried (inTx).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Observer receives one call per transaction (Commit or Erase), for the worker's
// metrics; groupSize is always 1. It is the SQLite backend's Observer, so the same
// metrics type serves both.
type Observer interface {
	ObserveCommit(groupSize int, took time.Duration, err error)
}

// Options tune a Store.
type Options struct {
	Observer Observer
	// MaxConns caps the pool; zero keeps the DSN's pool_max_conns or pgxpool's default
	// (the larger of 4 and the number of CPUs). Every replica opens its own pool: their
	// sum must stay under the server's max_connections.
	MaxConns int32
	// ReadOnly opens an existing store for export only: no schema changes, no writes,
	// and every transaction read-only on the server as well.
	ReadOnly bool
	// Keys, when not nil, encrypt the store at rest (seal.go, docs/encryption.md):
	// documents, lead tokens and file bytes sealed, identifiers kept as keyed hashes.
	// Nil stores in clear, as stores did before. Without a ring (not loaded yet,
	// destroyed) every operation fails with store.ErrKeyUnavailable.
	Keys *store.Keys
}

// Store is the PostgreSQL backend of store.Store.
//
// It uses pgxpool rather than database/sql over pgx/stdlib: the store needs what
// database/sql hides, namely batches (one round trip for all of a delivery's message
// inserts, another for the rest, instead of one per record), PostgreSQL's error codes
// to tell a deadlock (retried) from a real failure, and an AfterConnect hook that checks
// the durability settings of every connection, not only the first.
type Store struct {
	pool     *pgxpool.Pool
	opts     Options
	mu       sync.RWMutex // guards closed against concurrent enter/Close
	closed   bool
	inflight sync.WaitGroup // Commit, Erase and Export calls that Close waits for
	// hashed: every identifier is a keyed hash (encryption_state.hashed); until then
	// a store with Keys also looks for the clear forms (seal.go).
	hashed atomic.Bool
	// keyed: the store was opened with Keys before, so it may hold sealed records; it
	// is not written to without Keys (seal.go).
	keyed atomic.Bool
}

var _ store.Store = (*Store)(nil)

// Open connects to the database named by dsn (a URL or keyword/value string, as libpq
// takes) and creates the schema if it is missing.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse postgres dsn: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "omniflow-ingest-worker"
	}
	if opts.ReadOnly {
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	} else {
		// Per connection: synchronous_commit is a session setting (the DSN's options,
		// ALTER ROLE or ALTER DATABASE can change it), so checking one connection would
		// not vouch for the next. Pooled connections are replaced after an hour
		// (pgxpool's MaxConnLifetime), which re-checks a server reconfigured meanwhile.
		cfg.AfterConnect = checkDurability
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres pool: %w", err)
	}
	s := &Store{pool: pool, opts: opts}
	if err := s.init(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	// Ping opens the first connection, so a refused durability check fails Open.
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	if s.opts.ReadOnly {
		var ok bool
		if err := s.pool.QueryRow(ctx, `SELECT to_regclass('erasures') IS NOT NULL`).Scan(&ok); err != nil {
			return fmt.Errorf("open store read-only: %w", err)
		}
		if !ok {
			return errors.New("open store read-only: the database holds no store (no erasures table)")
		}
		// A store from before encryption has no state: everything in it is clear.
		if err := s.pool.QueryRow(ctx, `SELECT to_regclass('encryption_state') IS NOT NULL`).Scan(&ok); err != nil {
			return fmt.Errorf("open store read-only: %w", err)
		}
		if ok {
			if err := s.readEncryptionFlags(ctx, s.pool); err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("open store read-only: %w", err)
			}
		}
		return nil
	}
	err := s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, 0)`, lockSchema); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		// Fresh: no store yet, so one opened with Keys is encrypted from the start.
		var fresh bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass('erasures') IS NULL`).Scan(&fresh); err != nil {
			return fmt.Errorf("inspect schema: %w", err)
		}
		// No arguments: pgx sends it with the simple protocol, which runs a script.
		if _, err := tx.Exec(ctx, schema); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		return s.initEncryption(ctx, tx, fresh)
	})
	if err != nil {
		return fmt.Errorf("init store: %w", err)
	}
	return nil
}

// checkDurability refuses a connection whose commits would not be durable.
func checkDurability(ctx context.Context, c *pgx.Conn) error {
	var syncCommit, fsync string
	if err := c.QueryRow(ctx, `SELECT current_setting('synchronous_commit'), current_setting('fsync')`).Scan(&syncCommit, &fsync); err != nil {
		return fmt.Errorf("read durability settings: %w", err)
	}
	return durable(syncCommit, fsync)
}

// durable accepts synchronous_commit on and remote_apply (stronger: it also waits for
// synchronous standbys to apply the commit). off, local and remote_write return from
// COMMIT before the commit is flushed everywhere it is promised to be (off: not even
// locally), and fsync=off makes no flush durable at all.
func durable(syncCommit, fsync string) error {
	switch syncCommit {
	case "on", "remote_apply":
	default:
		return fmt.Errorf("postgres synchronous_commit is %q: commits would be acknowledged before they are durable; the store needs on (or remote_apply)", syncCommit)
	}
	if fsync != "on" {
		return fmt.Errorf("postgres runs with fsync=%s: no commit is durable; the store needs fsync on", fsync)
	}
	return nil
}

// enter registers an operation, or fails once Close has begun.
func (s *Store) enter() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	s.inflight.Add(1)
	return nil
}

// Close stops accepting operations, waits for those running, and closes the pool.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.inflight.Wait()
	s.pool.Close()
	return nil
}

// Retries. Commit and Erase take their locks in a fixed order (contact locks ascending,
// then message locks ascending in one statement, then rows in key order), so they do not
// deadlock each other in the common cases. A transaction that learns it needs a contact
// lock out of order is run again at once (errRelock). What ordering cannot cover, say an
// erasure deleting a person's statuses while a delivery updates two of them, can still
// deadlock; PostgreSQL then aborts one side (40P01) after deadlock_timeout. A server or
// role configured with default_transaction_isolation serializable can also fail a
// transaction with 40001. All are safe to run again from the start: the failed attempt
// left nothing behind. Anything else is returned at once. The bound keeps a request
// within its deadline; a delivery that still fails is answered with an error and
// redelivered by Meta.
const maxAttempts = 8

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.Is(err, errRelock) || errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// inTx runs fn in a transaction and commits it, retrying as described above.
func (s *Store) inTx(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.tryTx(ctx, opts, fn)
		if err == nil || attempt == maxAttempts || !retryable(err) {
			return err
		}
		if errors.Is(err, errRelock) {
			continue // nobody to wait for: the next attempt takes its locks in order
		}
		// Jittered so that the two sides of a deadlock do not meet again.
		wait := time.Duration(attempt*attempt) * 5 * time.Millisecond
		wait += rand.N(wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("retry after %w: %w", err, ctx.Err())
		}
	}
}

func (s *Store) tryTx(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	// A no-op after Commit. Not ctx: a cancelled request must still release its locks
	// (pgx closes the connection if even this fails).
	defer func() { _ = tx.Rollback(context.Background()) }()
	if err := fn(tx); err != nil {
		return err
	}
	// COMMIT returns once the commit is flushed (synchronous_commit on, checked per
	// connection): only then may the delivery be acknowledged. If it fails, whether it
	// reached the disk is unknown; the error makes Meta redeliver, and the redelivery is
	// deduplicated.
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (s *Store) observe(start time.Time, err error) {
	if s.opts.Observer != nil {
		s.opts.Observer.ObserveCommit(1, time.Since(start), err)
	}
}

// Commit implements store.Store.
func (s *Store) Commit(ctx context.Context, b *meta.Batch) (store.CommitResult, error) {
	if err := store.Validate(b); err != nil {
		return store.CommitResult{}, err
	}
	if s.opts.ReadOnly {
		return store.CommitResult{}, store.ErrReadOnly
	}
	// One ring for the whole delivery; without one nothing is written (in clear or
	// otherwise).
	z, err := s.sealer()
	if err != nil {
		return store.CommitResult{}, fmt.Errorf("commit delivery: %w", err)
	}
	// Documents are encoded (and sealed) before the transaction, to hold locks for SQL
	// only.
	p, err := prepare(b, z)
	if err != nil {
		return store.CommitResult{}, err
	}
	if err := s.enter(); err != nil {
		return store.CommitResult{}, err
	}
	defer s.inflight.Done()
	start := time.Now()
	var res store.CommitResult
	learnt := map[int32]bool{}
	err = s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		res = store.CommitResult{} // a retried attempt counts afresh
		return apply(ctx, tx, p, newLocker(tx, learnt), &res)
	})
	s.observe(start, err)
	if err != nil {
		return store.CommitResult{}, fmt.Errorf("commit delivery: %w", err)
	}
	return res, nil
}

// Erase implements store.Store.
func (s *Store) Erase(ctx context.Context, req store.EraseRequest) (store.Counts, error) {
	if req.Subject.ID == "" {
		return store.Counts{}, errors.New("erase: empty subject")
	}
	if s.opts.ReadOnly {
		return store.Counts{}, store.ErrReadOnly
	}
	z, err := s.sealer()
	if err != nil {
		return store.Counts{}, fmt.Errorf("erase subject: %w", err)
	}
	if err := s.enter(); err != nil {
		return store.Counts{}, err
	}
	defer s.inflight.Done()
	start := time.Now()
	var counts store.Counts
	learnt := map[int32]bool{}
	err = s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var err error
		counts, err = erase(ctx, tx, z, newLocker(tx, learnt), req)
		return err
	})
	s.observe(start, err)
	if err != nil {
		return store.Counts{}, fmt.Errorf("erase subject: %w", err)
	}
	return counts, nil
}

// Advisory locks: the first key of pg_advisory_xact_lock(int4, int4) names what is
// locked, the second which one. Keys are hashes, so two names may share a lock; that
// only makes two transactions wait for each other, never lets a race through. Advisory
// locks are per database, i.e. per tenant.
const (
	lockSchema  int32 = 0x4f4d0001 // creating the schema
	lockContact int32 = 0x4f4d0002 // an identifier of a person: subject, wa_id or user id
	lockMessage int32 = 0x4f4d0003 // a bucket of message ids
)

// messageBuckets bounds the locks a transaction takes for its messages: PostgreSQL's
// lock table is sized for about 64 locks per connection (max_locks_per_transaction),
// and a delivery can carry hundreds of messages. A deletion (rare) makes the messages
// of its bucket wait for its commit, no others.
const messageBuckets = 128

func hashKey(parts ...string) int32 {
	h := fnv.New32a()
	for _, p := range parts {
		_, _ = h.Write([]byte(p))
		_, _ = h.Write([]byte{0})
	}
	return int32(h.Sum32())
}

// contactLockKey locks an identifier on every platform and channel: an erasure can name
// a person without either, and identifiers of different platforms rarely collide.
func contactLockKey(id string) int32 { return hashKey(id) }

func messageLockKey(platform, id string) int32 {
	return int32(uint32(hashKey(platform, id)) % messageBuckets)
}

// locker takes contact locks in a transaction, always in ascending key order: a
// transaction never waits for a contact lock lower than one it holds, so no cycle can
// form among them. A lock found to be needed out of that order (a row read under the
// first locks carries an identifier with a lower key) is not waited for: the
// transaction fails with errRelock and is run again (inTx), taking the learnt keys
// together with its first ones.
type locker struct {
	tx     pgx.Tx
	held   map[int32]bool
	max    int32
	learnt map[int32]bool // kept across the attempts of one operation
}

// errRelock asks inTx to run the transaction again at once, with more keys learnt.
var errRelock = errors.New("contact locks must be taken again in order")

func newLocker(tx pgx.Tx, learnt map[int32]bool) *locker {
	return &locker{tx: tx, held: map[int32]bool{}, learnt: learnt}
}

// missing returns the keys not held yet, without duplicates.
func (l *locker) missing(keys []int32) []int32 {
	var out []int32
	for _, k := range keys {
		if !l.held[k] && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// first takes the transaction's first contact locks: keys and those learnt before.
func (l *locker) first(ctx context.Context, keys []int32) error {
	for k := range l.learnt {
		keys = append(keys, k)
	}
	return l.lock(ctx, keys)
}

// lock takes the locks of keys not held yet, or fails with errRelock when one of them
// sorts below a lock already held.
func (l *locker) lock(ctx context.Context, keys []int32) error {
	keys = l.missing(keys)
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	if len(l.held) > 0 && keys[0] < l.max {
		for _, k := range keys {
			l.learnt[k] = true
		}
		return errRelock
	}
	// unnest yields the keys in array order, and the locks are taken in that order.
	if _, err := l.tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int4[]) AS k`, lockContact, keys); err != nil {
		return fmt.Errorf("lock contacts: %w", err)
	}
	for _, k := range keys {
		l.held[k] = true
	}
	l.max = keys[len(keys)-1]
	return nil
}
