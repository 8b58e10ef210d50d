// Command frontdoor is the webhook front door of a shared Meta app: Meta's one callback
// URL for the app, forwarding each tenant's parts of every delivery to that tenant's
// worker, and (with --app) its data-deletion callback URL, which has every bound
// tenant's worker file the request (see internal/frontdoor).
//
//	frontdoor serve --routes FILE [--app NAME] --app-secret-file F --verify-token-file F --forwarding-key-file F
//	frontdoor serve --cluster [--app NAME] --app-secret-file F --verify-token-file F --forwarding-key-file F
//	frontdoor tenant-key --forwarding-key-file F --tenant NAME
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/omniflowcrm/omniflow-operator/internal/forward"
	"github.com/omniflowcrm/omniflow-operator/internal/frontdoor"
	"github.com/omniflowcrm/omniflow-operator/internal/memlimit"
)

const usage = `usage:
  frontdoor serve --routes FILE [--app NAME] --app-secret-file F --verify-token-file F --forwarding-key-file F [flags]
  frontdoor serve --cluster [--app NAME] --app-secret-file F --verify-token-file F --forwarding-key-file F [flags]
  frontdoor tenant-key --forwarding-key-file F --tenant NAME
Run "frontdoor CMD -h" for the flags of a command.
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
	case "tenant-key":
		err = tenantKey(os.Args[2:], os.Stdout)
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "frontdoor:", err)
		}
		os.Exit(1)
	}
}

// tenantKey prints, in hex, the forwarding credential of one tenant's worker (its
// --forward-key-file): what the operator would put in the tenant's Secret.
func tenantKey(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tenant-key", flag.ContinueOnError)
	keyFile := fs.String("forwarding-key-file", "", "file holding the front door's forwarding key in hex")
	tenant := fs.String("tenant", "", "the tenant whose worker gets the credential")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *keyFile == "" || *tenant == "" {
		return errors.New("--forwarding-key-file and --tenant are required")
	}
	key, err := forward.ReadKeyFile(*keyFile)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, hex.EncodeToString(forward.TenantKey(key, *tenant)))
	return err
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "address to serve Meta's webhooks, health and metrics on")
	routes := fs.String("routes", "", "routes file: the tenants, their workers and their channels' ids (reloaded on change)")
	app := fs.String("app", "", "the MetaApp served: with --cluster only the MetaChannels whose appRef names it are routed; the webhook is served under /apps/<app>/ too (the operator's Ingress path); Meta's data-deletion callback is answered (needs it)")
	publicBase := fs.String("public-base-url", "", "base of the data-deletion status page's URL answered to Meta (default: from the callback's request)")
	dialAt := map[string]string{}
	fs.Func("worker-address", "HOST:PORT=ADDR: dial ADDR for a worker named HOST:PORT (repeatable; for tests and local runs, where worker Service names do not resolve)", func(v string) error {
		from, to, ok := strings.Cut(v, "=")
		if !ok || from == "" || to == "" {
			return errors.New("want HOST:PORT=ADDR")
		}
		dialAt[from] = to
		return nil
	})
	cluster := fs.Bool("cluster", false, "route by the cluster's MetaChannels (watched; only the Ready holder of an id) to each tenant's worker Service, as the pod's ServiceAccount or $KUBECONFIG's user")
	reload := fs.Duration("routes-reload-interval", 5*time.Second, "how often the routes file is checked for changes")
	secretFile := fs.String("app-secret-file", "", "file holding the Meta app's App Secret")
	tokenFile := fs.String("verify-token-file", "", "file holding the verify token typed in Meta's dashboard")
	keyFile := fs.String("forwarding-key-file", "", "file holding the forwarding key in hex (each tenant's credential is derived from it)")
	timeout := fs.Duration("forward-timeout", frontdoor.DefaultForwardTimeout, "longest wait for one worker's answer (Messenger gives up after 5 s)")
	maxBody := fs.Int64("max-body-bytes", frontdoor.DefaultMaxBodyBytes, "largest delivery accepted; larger ones get 413")
	verbosity := fs.Int("v", 0, "log verbosity")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*routes == "") == !*cluster || *secretFile == "" || *tokenFile == "" || *keyFile == "" {
		return errors.New("--routes or --cluster (one of them), --app-secret-file, --verify-token-file and --forwarding-key-file are required")
	}
	log := logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.Level(-*verbosity)}))
	memlimit.Configure(log, frontdoor.GCPercent)
	secret, err := frontdoor.ReadSecretFile(*secretFile, "app secret")
	if err != nil {
		return err
	}
	token, err := frontdoor.ReadSecretFile(*tokenFile, "verify token")
	if err != nil {
		return err
	}
	key, err := forward.ReadKeyFile(*keyFile)
	if err != nil {
		return err
	}
	table := &frontdoor.Table{}
	var runSource func(ctx context.Context) error
	if *cluster {
		klog.SetLogger(log)
		ctrllog.SetLogger(log)
		rc, err := config.GetConfig()
		if err != nil {
			return fmt.Errorf("kubernetes client config: %w", err)
		}
		// Deliveries get 503 until the first list is in (readyz says so too).
		runSource = (&frontdoor.ClusterSource{RestConfig: rc, Table: table, Log: log, App: *app}).Run
	} else {
		src := &frontdoor.FileSource{Path: *routes, Table: table, Log: log, Interval: *reload}
		if err := src.Load(); err != nil {
			return fmt.Errorf("load routes: %w", err)
		}
		runSource = func(ctx context.Context) error { src.Run(ctx); return nil }
	}
	srv, err := frontdoor.NewServer(frontdoor.Config{AppSecret: []byte(secret), VerifyToken: token, ForwardingKey: key,
		Table: table, ForwardTimeout: *timeout, MaxBodyBytes: *maxBody, Log: log, App: *app, PublicBaseURL: *publicBase, Dial: frontdoor.DialAt(dialAt)})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	handler := srv.Handler()
	if *app != "" {
		// The Ingress sends /apps/<app>/ here unchanged; health probes come unprefixed.
		prefix := "/apps/" + *app
		mux := http.NewServeMux()
		mux.Handle(prefix+"/", http.StripPrefix(prefix, handler))
		mux.Handle("/", handler)
		handler = mux
	}
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() {
		if err := runSource(ctx); err != nil {
			errc <- fmt.Errorf("routes: %w", err)
		}
	}()
	go func() { errc <- fmt.Errorf("serve: %w", hs.Serve(ln)) }()
	log.Info("Serving", "addr", ln.Addr().String())
	log.Info("Ready")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Stateless: in-flight deliveries finish (each within the forward timeout), then exit.
	sctx, cancel := context.WithTimeout(context.Background(), *timeout+time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
