package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-logr/logr"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/reseal"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// canaryRecords is how many stored records CheckKey opens: the first of each table in
// export order, enough to meet sealed ones in any store that holds them, and a few
// milliseconds at start.
const canaryRecords = 64

var errCanaryDone = errors.New("canary records opened")

// CheckKey opens the first stored records (a canary) before the worker serves: a store
// sealed under another key (another tenant's ring, or a key made anew after the
// tenant's was lost) does not open, and a worker that went on would store new records
// beside them under other keyed hashes (message ids no longer deduplicated, a
// subject's records no longer found together). The worker refuses to start instead,
// with the reason; so does a worker without a key over a store that holds sealed
// records. The error names the reason, never a record's content.
func CheckKey(ctx context.Context, st store.Store) error {
	// The export is cut short by cancelling its context too: a PostgreSQL result set
	// is otherwise read to its end when its rows are closed, the whole table at start.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	err := st.Export(cctx, store.Filter{}, func(store.Record) error {
		if n++; n >= canaryRecords {
			cancel()
			return errCanaryDone
		}
		return nil
	})
	switch {
	case err == nil, errors.Is(err, errCanaryDone):
		return nil
	case n >= canaryRecords && ctx.Err() == nil && errors.Is(err, context.Canceled):
		return nil // cut short by the cancel above, after the canary records opened
	case errors.Is(err, store.ErrKeyUnavailable):
		return fmt.Errorf("the store holds records sealed under a data key, and this worker has no key to open them "+
			"(in a cluster the operator passes --data-key-secret; standalone, give --data-key-file): %w", err)
	case errors.Is(err, datakey.ErrAuthentication), errors.Is(err, datakey.ErrUnknownVersion), errors.Is(err, datakey.ErrFormat):
		return fmt.Errorf("the store's records do not open under this worker's data key: the store was sealed under another key "+
			"(another tenant's, or a key made anew after this tenant's was lost); the worker does not start, so as not to store "+
			"new records under other keyed hashes. Restore the tenant's key Secret from a backup: %w", err)
	default:
		return fmt.Errorf("check the data key against the store: %w", err)
	}
}

// logEncryption says once, at start, whether the worker encrypts at rest; never any key
// material, only the version in force.
func logEncryption(log logr.Logger, src datakey.Source) error {
	if src == nil {
		log.Info("Storing in clear: no data key was given (--data-key-secret, --data-key-file); for standalone and development use only")
		return nil
	}
	ring, err := src.Ring()
	if err != nil {
		return fmt.Errorf("data key: %w", err)
	}
	log.Info("Encrypting at rest under the tenant's data key", "keyVersion", ring.ActiveVersion(), "versions", len(ring.Versions()))
	return nil
}

// resealTask runs the encryption pass on the worker's store, with its metrics on the
// worker's registry.
func resealTask(cfg reseal.Config, metrics *Metrics, log logr.Logger) func(context.Context, store.Store) {
	m := reseal.NewMetrics(metrics.Registry)
	return func(ctx context.Context, st store.Store) {
		rs, ok := st.(store.Resealer)
		if !ok {
			log.Info("Encryption pass unavailable: this store has no reseal pass")
			return
		}
		(&reseal.Runner{Config: cfg, Store: rs, Metrics: m, Log: log.WithName("encryption")}).Run(ctx)
	}
}
