package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/mediafetch"
	"github.com/omniflowcrm/omniflow-operator/internal/retention"
)

// The operator's Deployment runs the worker with controllers.WorkerArgs and the
// POD_NAMESPACE/OMNIFLOW_TENANT environment: exactly those must select in-cluster mode
// for the tenant's namespace.
func TestParseServeDeploymentArgs(t *testing.T) {
	t.Parallel()
	tenant := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}}
	env := map[string]string{envNamespace: tenant.NamespaceName(), envTenant: tenant.Name}
	args := controllers.WorkerArgs(tenant)
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("WorkerArgs = %q, want the serve command first", args)
	}
	o, err := parseServe(args[1:], func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("parseServe(%q): %v", args, err)
	}
	if !o.inCluster() || o.namespace != "tenant-acme" || o.tenant != "acme" ||
		o.cfg.Listen != ":8080" || o.cfg.DataDir != controllers.DataMountPath {
		t.Fatalf("parsed %q as inCluster=%v namespace=%q tenant=%q listen=%q dataDir=%q",
			args, o.inCluster(), o.namespace, o.tenant, o.cfg.Listen, o.cfg.DataDir)
	}
}

func TestParseServeModes(t *testing.T) {
	t.Parallel()
	env := map[string]string{envNamespace: "tenant-env", envTenant: "env"}
	getenv := func(k string) string { return env[k] }
	noenv := func(string) string { return "" }
	tests := []struct {
		name          string
		args          []string
		getenv        func(string) string
		wantErr       string
		wantCluster   bool
		wantNamespace string
		wantTenant    string
	}{
		{"environment alone selects the cluster", []string{"--data-dir=/d"}, getenv, "", true, "tenant-env", "env"},
		{"flags win over the environment", []string{"--data-dir=/d", "--namespace=tenant-x", "--tenant=x"}, getenv, "", true, "tenant-x", "x"},
		{"a channels file is standalone", []string{"--data-dir=/d", "--channels=c.yaml"}, getenv, "", false, "tenant-env", "env"},
		{"standalone needs no namespace", []string{"--data-dir=/d", "--channels=c.yaml"}, noenv, "", false, "", ""},
		{"neither file nor namespace", []string{"--data-dir=/d"}, noenv, "--namespace", false, "", ""},
		{"namespace without tenant", []string{"--data-dir=/d", "--namespace=tenant-x"}, noenv, "--tenant", false, "", ""},
		{"no data dir", []string{"--namespace=tenant-x", "--tenant=x"}, noenv, "--data-dir", false, "", ""},
		{"postgres without its DSN", []string{"--store=postgres", "--namespace=tenant-x", "--tenant=x"}, noenv, envPostgresDSN, false, "", ""},
		{"postgres needs no data dir", []string{"--store=postgres", "--namespace=tenant-x", "--tenant=x"},
			func(k string) string { return map[string]string{envPostgresDSN: "postgres://u@db/t"}[k] }, "", true, "tenant-x", "x"},
		{"unknown store", []string{"--store=mysql", "--data-dir=/d", "--namespace=tenant-x", "--tenant=x"}, noenv, "--store", false, "", ""},
		{"stray argument", []string{"--data-dir=/d", "--channels=c.yaml", "extra"}, noenv, "unexpected", false, "", ""},
		{"public base URL", []string{"--data-dir=/d", "--namespace=tenant-x", "--tenant=x", "--public-base-url=https://hooks.example.com/t/x"}, noenv, "", true, "tenant-x", "x"},
		{"relative public base URL", []string{"--data-dir=/d", "--namespace=tenant-x", "--tenant=x", "--public-base-url=hooks.example.com"}, noenv, "--public-base-url", false, "", ""},
		{"a key file standalone", []string{"--data-dir=/d", "--channels=c.yaml", "--data-key-file=k.json"}, noenv, "", false, "", ""},
		{"a key file in a cluster", []string{"--data-dir=/d", "--namespace=tenant-x", "--tenant=x", "--data-key-file=k.json"}, noenv, "--data-key-file", false, "", ""},
		{"a key Secret standalone", []string{"--data-dir=/d", "--channels=c.yaml", "--data-key-secret=ns/k"}, noenv, "--data-key-secret", false, "", ""},
		{"no reseal batch", []string{"--data-dir=/d", "--channels=c.yaml", "--reseal-batch-size=0"}, noenv, "--reseal-batch-size", false, "", ""},
		{"public base URL with a query", []string{"--data-dir=/d", "--namespace=tenant-x", "--tenant=x", "--public-base-url=https://h.example.com/?a=b"}, noenv, "--public-base-url", false, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseServe(tc.args, tc.getenv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.inCluster() != tc.wantCluster || o.namespace != tc.wantNamespace || o.tenant != tc.wantTenant {
				t.Fatalf("inCluster=%v namespace=%q tenant=%q, want %v %q %q",
					o.inCluster(), o.namespace, o.tenant, tc.wantCluster, tc.wantNamespace, tc.wantTenant)
			}
		})
	}
}

// Standalone, the tenant comes from the channels file; a --tenant (or $OMNIFLOW_TENANT)
// that names another tenant is a misconfiguration, refused before anything listens.
func TestFileSourceTenant(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "channels.yaml")
	if err := os.WriteFile(path, []byte(channelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ flag, want, wantErr string }{
		{"", "acme", ""},
		{"acme", "acme", ""},
		{"globex", "", `does not match the channels file's tenant "acme"`},
	} {
		o, err := parseServe([]string{"--data-dir=/d", "--channels=" + path, "--tenant=" + tc.flag}, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		o.cfg.Registry = channels.NewRegistry()
		err = fileSource(o, logr.Discard())
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("--tenant=%q: err = %v, want %q", tc.flag, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("--tenant=%q: %v", tc.flag, err)
		case o.cfg.Tenant != tc.want || o.cfg.Source == nil || len(o.cfg.Registry.Names()) != 1:
			t.Errorf("--tenant=%q: tenant %q, source %v, channels %v", tc.flag, o.cfg.Tenant, o.cfg.Source, o.cfg.Registry.Names())
		}
	}
}

// spec.retention reaches the worker through the Deployment's arguments; the worker's
// own flags refuse a policy it could not run, naming the flag.
func TestParseServeRetentionFromDeploymentArgs(t *testing.T) {
	t.Parallel()
	tenant := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"},
		Spec: platformv1.TenantSpec{Retention: &platformv1.RetentionPolicy{MessagesMaxAge: metav1.Duration{Duration: 8760 * time.Hour}}}}
	env := map[string]string{envNamespace: tenant.NamespaceName(), envTenant: tenant.Name}
	o, err := parseServe(controllers.WorkerArgs(tenant)[1:], func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Retention.MaxAge != 8760*time.Hour || o.cfg.Retention.Interval != time.Hour || o.cfg.Retention.BatchSize != retention.DefaultBatchSize {
		t.Errorf("retention %+v, want a year, hourly, default batches", o.cfg.Retention)
	}
	tenant.Spec.Retention = nil
	if o, err = parseServe(controllers.WorkerArgs(tenant)[1:], func(k string) string { return env[k] }); err != nil || o.cfg.Retention.MaxAge != 0 {
		t.Errorf("without a policy: %+v %v, want retention off", o.cfg.Retention, err)
	}
	for _, bad := range [][]string{{"--retention-max-age=-1h"}, {"--retention-max-age=24h", "--retention-interval=0s"}, {"--retention-max-age=24h", "--retention-batch-size=0"}} {
		_, err := parseServe(append([]string{"--data-dir=/d", "--channels=c.yaml"}, bad...), func(string) string { return "" })
		flag := strings.SplitN(bad[len(bad)-1], "=", 2)[0]
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("parseServe(%q) = %v, want an error naming %s", bad, err, flag)
		}
	}
}

// The operator tells the worker where its data key is through $OMNIFLOW_DATA_KEY_SECRET;
// it is read from the cluster, so only in-cluster mode takes it, and only as
// namespace/name.
func TestParseServeDataKeySecret(t *testing.T) {
	t.Parallel()
	ref := "omniflow-system/" + controllers.DataKeySecretName("acme", "uid-1")
	env := map[string]string{envNamespace: "tenant-acme", envTenant: "acme", envDataKeySecret: ref}
	o, err := parseServe([]string{"--data-dir=/d"}, func(k string) string { return env[k] })
	if err != nil || o.dataKeySecret != ref || o.dataKeyWait != 2*time.Minute {
		t.Fatalf("parseServe = %+v, %v; want the key from the environment", o, err)
	}
	for name, args := range map[string][]string{
		"standalone":     {"--data-dir=/d", "--channels=c.yaml", "--data-key-secret=" + ref},
		"no namespace":   {"--data-dir=/d", "--namespace=tenant-x", "--tenant=x", "--data-key-secret=just-a-name"},
		"too many parts": {"--data-dir=/d", "--namespace=tenant-x", "--tenant=x", "--data-key-secret=a/b/c"},
	} {
		if _, err := parseServe(args, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "data-key-secret") {
			t.Errorf("%s: err = %v, want one naming --data-key-secret", name, err)
		}
	}
}

// The operator's Deployment passes no media flag: the worker fetches with the defaults.
// A limit the fetcher could not run with is refused, naming the flag.
func TestParseServeMediaFlags(t *testing.T) {
	t.Parallel()
	tenant := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}}
	env := map[string]string{envNamespace: tenant.NamespaceName(), envTenant: tenant.Name}
	o, err := parseServe(controllers.WorkerArgs(tenant)[1:], func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	m := o.cfg.Media
	if !o.cfg.MediaFetch || m.MaxBytes != 100<<20 || m.Concurrency != mediafetch.DefaultConcurrency ||
		m.GraphAPIVersion != mediafetch.DefaultGraphAPIVersion || m.RequestTimeout != 30*time.Second || m.DownloadTimeout != 10*time.Minute {
		t.Errorf("media fetching %v with %+v, want on with the defaults", o.cfg.MediaFetch, m)
	}
	standalone := []string{"--data-dir=/d", "--channels=c.yaml"}
	o, err = parseServe(append(standalone, "--media-max-bytes=1024", "--media-concurrency=2", "--graph-api-version=v25.0"), func(string) string { return "" })
	if err != nil || o.cfg.Media.MaxBytes != 1024 || o.cfg.Media.Concurrency != 2 || o.cfg.Media.GraphAPIVersion != "v25.0" {
		t.Errorf("parsed %+v, %v", o.cfg.Media, err)
	}
	for _, bad := range []string{"--media-max-bytes=0", "--media-concurrency=0", "--media-concurrency=1000", "--graph-api-version=25",
		"--media-request-timeout=0s", "--media-download-timeout=-1s"} {
		_, err := parseServe(append(standalone, bad), func(string) string { return "" })
		flag := strings.SplitN(bad, "=", 2)[0]
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("parseServe(%q) = %v, want an error naming %s", bad, err, flag)
		}
	}
	// Off, the limits do not matter.
	if _, err := parseServe(append(standalone, "--media-fetch=false", "--media-concurrency=0"), func(string) string { return "" }); err != nil {
		t.Errorf("--media-fetch=false: %v", err)
	}
}

// Every flag of serve is in the worker's manual, where operators look them up.
func TestServeFlagsAreDocumented(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("serve.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "ingest-worker.md"))
	if err != nil {
		t.Fatal(err)
	}
	flags := regexp.MustCompile(`fs\.[A-Za-z0-9]*Var\(&[A-Za-z0-9_.]+,\s*"([a-z0-9-]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(flags) < 20 {
		t.Fatalf("found only %d flags in serve.go", len(flags))
	}
	for _, f := range flags {
		name := "`--" + f[1] + "`"
		if f[1] == "v" {
			name = "`-v`"
		}
		if !strings.Contains(string(doc), "| "+name+" |") {
			t.Errorf("docs/ingest-worker.md has no row for %s", name)
		}
	}
}
