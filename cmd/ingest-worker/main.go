// Command ingest-worker receives one tenant's Meta webhooks and stores them durably.
//
//	ingest-worker serve  --listen ADDR --data-dir DIR --namespace NS --tenant NAME   (in a cluster)
//	ingest-worker serve  --listen ADDR --data-dir DIR --channels FILE                (standalone)
//	ingest-worker export --data-dir DIR [--subject ID] [--platform P] [--files DIR] [--data-key-file FILE]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/go-logr/logr"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/ingest"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

const usage = `usage:
  ingest-worker serve  --listen ADDR --data-dir DIR --namespace NS --tenant NAME [flags]
  ingest-worker serve  --listen ADDR --data-dir DIR --channels FILE [flags]
  ingest-worker export --data-dir DIR [--subject ID] [--platform WhatsApp|Messenger|Instagram] [--files DIR] [--data-key-file FILE]
Run "ingest-worker CMD -h" for the flags of a command.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "export":
		err = export(os.Args[2:], os.Stdout)
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "ingest-worker:", err)
		}
		os.Exit(1)
	}
}

// newLogger logs JSON lines to stderr through logr; verbosity v enables V(1..v).
func newLogger(v int) logr.Logger {
	h := slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.Level(-v)})
	return logr.FromSlogHandler(h)
}

// exportError says why records could not be exported: a sealed store needs the key it
// was sealed under.
func exportError(err error) error {
	switch {
	case errors.Is(err, store.ErrKeyUnavailable):
		return fmt.Errorf("export: cannot open the stored records: key unavailable (give --data-key-file or --data-key-secret; a destroyed key cannot be given): %w", err)
	case errors.Is(err, datakey.ErrAuthentication), errors.Is(err, datakey.ErrUnknownVersion):
		return fmt.Errorf("export: cannot open the stored records: a record does not authenticate under this key (another tenant's key, or tampered): %w", err)
	}
	return fmt.Errorf("export: %w", err)
}

// export prints every stored record (or one subject's) as JSON lines: the right of access
// and portability, and how tests look inside a store.
func export(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	storeKind := fs.String("store", storeSQLite, "the tenant's store: sqlite (in --data-dir) or postgres (the database named by $"+envPostgresDSN+")")
	dataDir := fs.String("data-dir", "", "directory of the tenant's SQLite store (required with --store=sqlite)")
	subject := fs.String("subject", "", "only this end user's records: WhatsApp wa_id or business-scoped id, PSID or IGSID")
	platform := fs.String("platform", "", "restrict --subject to one platform (WhatsApp, Messenger, Instagram)")
	filesDir := fs.String("files", "", "also write the bytes of every exported fetched file into this directory, named by their storedSHA256")
	keyFile := fs.String("data-key-file", "", "file holding the tenant's data key Secret's data as JSON (kubectl get secret NAME -o jsonpath='{.data}'): opens a sealed store, or a copy of one, without an API server")
	keySecret := fs.String("data-key-secret", os.Getenv(envDataKeySecret), "the tenant's data key Secret as namespace/name, read with the in-cluster client (default $"+envDataKeySecret+", which the worker's pod has)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var dsn string
	if err := storeSelection(*storeKind, *dataDir, os.Getenv, &dsn); err != nil {
		fs.Usage()
		return err
	}
	switch meta.Platform(*platform) {
	case "", meta.WhatsApp, meta.Messenger, meta.Instagram:
	default:
		return fmt.Errorf("--platform %q: want WhatsApp, Messenger or Instagram", *platform)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keys, err := exportKeys(ctx, *keyFile, *keySecret, newLogger(0))
	if err != nil {
		return err
	}
	st, err := ingest.OpenStore(ctx, *dataDir, dsn, true, nil, store.NewKeys(keys))
	if err != nil {
		return err
	}
	defer st.Close() //nolint:errcheck // opened read-only for the export: nothing to flush, and the export's own errors are returned
	var f store.Filter
	if *subject != "" {
		f.Subject = &store.Subject{Platform: meta.Platform(*platform), ID: *subject}
	}
	var files *fileWriter
	if *filesDir != "" {
		if files, err = newFileWriter(*filesDir); err != nil {
			return err
		}
	}
	w := bufio.NewWriter(stdout)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := st.Export(context.Background(), f, func(r store.Record) error {
		if files != nil {
			if err := files.note(r); err != nil {
				return err
			}
		}
		return enc.Encode(r)
	}); err != nil {
		return exportError(err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write export: %w", err)
	}
	if files != nil {
		return files.write(context.Background(), st)
	}
	return nil
}
