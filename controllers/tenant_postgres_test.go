package controllers

import (
	"context"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
)

func TestPostgresName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 54) + "-x"   // 56: the longest name without spec.namespace
	longer := strings.Repeat("a", 54) + "-y" // differs only past PostgreSQL's 63 bytes
	tests := []struct{ tenant, want string }{
		{"acme", "omniflow_acme"},
		{"acme-shop-2", "omniflow_acme_shop_2"},
		{strings.Repeat("b", 54), "omniflow_" + strings.Repeat("b", 54)}, // exactly 63
	}
	for _, tc := range tests {
		if got := postgresName(tc.tenant); got != tc.want {
			t.Errorf("postgresName(%q) = %q, want %q", tc.tenant, got, tc.want)
		}
	}
	a, b := postgresName(long), postgresName(longer)
	if len(a) != postgresMaxIdentifier || len(b) != postgresMaxIdentifier {
		t.Fatalf("long names must be cut to %d bytes: %q (%d), %q (%d)", postgresMaxIdentifier, a, len(a), b, len(b))
	}
	if a == b {
		t.Fatalf("two tenants whose names differ past 63 bytes share %q", a)
	}
	if postgresName(long) != a {
		t.Fatal("postgresName is not deterministic")
	}
}

func TestQuoteIdentifiersAndLiterals(t *testing.T) {
	t.Parallel()
	if got := quoteIdent(`omniflow_a"b`); got != `"omniflow_a""b"` {
		t.Errorf("quoteIdent = %s", got)
	}
	if got := quoteLiteral("it's"); got != `'it''s'` {
		t.Errorf("quoteLiteral = %s", got)
	}
	if got := quoteLiteral(`a\'b`); got != `E'a\\''b'` {
		t.Errorf("quoteLiteral with a backslash = %s", got)
	}
}

// The tenant DSN keeps the admin's server and TLS mode and nothing else of
// the admin's, and a password of any characters survives both DSN forms.
func TestTenantDSN(t *testing.T) {
	t.Parallel()
	const password = `p@ss w'rd\:/?#%&= "x"`
	tests := []struct {
		name, admin, host string
		port              uint16
		sslmode           string
	}{
		{"url", "postgres://admin:adminpw@db.example.test:6543/postgres?sslmode=require&application_name=ops", "db.example.test", 6543, "sslmode=require"},
		{"url without port", "postgresql://admin:adminpw@db.example.test/postgres?sslmode=disable", "db.example.test", 5432, "sslmode=disable"},
		{"keyword/value", "host=db.example.test port=6543 user=admin password='admin pw' dbname=postgres sslmode=require options='-c x=y'", "db.example.test", 6543, "sslmode='require'"},
		{"keyword/value, unix socket", `host=/var/run/postgresql user=admin password=adminpw sslmode=disable`, "/var/run/postgresql", 5432, "sslmode='disable'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dsn, err := tenantDSN(tc.admin, "omniflow_acme", password, "omniflow_acme")
			if err != nil {
				t.Fatalf("tenantDSN: %v", err)
			}
			cfg, err := pgconn.ParseConfig(dsn)
			if err != nil {
				t.Fatalf("the tenant DSN does not parse: %v", err)
			}
			if cfg.Host != tc.host || cfg.Port != tc.port || cfg.User != "omniflow_acme" || cfg.Database != "omniflow_acme" || cfg.Password != password {
				t.Fatalf("parsed host=%q port=%d user=%q db=%q password=%q", cfg.Host, cfg.Port, cfg.User, cfg.Database, cfg.Password)
			}
			if !strings.Contains(dsn, tc.sslmode) {
				t.Errorf("tenant DSN %q lost the admin's %s", dsn, tc.sslmode)
			}
			for _, leak := range []string{"adminpw", "admin pw", "application_name", "options", "user=admin ", "admin:"} {
				if strings.Contains(dsn, leak) {
					t.Errorf("tenant DSN %q carries the admin's %q", dsn, leak)
				}
			}
		})
	}
	if _, err := tenantDSN("host=h password='s3cret", "u", "p", "d"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("a broken admin DSN must fail without quoting it, got %v", err)
	}
}

func TestParsePostgresAdminSecret(t *testing.T) {
	t.Parallel()
	if got, err := ParsePostgresAdminSecret(""); err != nil || got != (types.NamespacedName{}) {
		t.Errorf("empty flag: %v, %v", got, err)
	}
	if got, err := ParsePostgresAdminSecret("omniflow-system/pg-admin"); err != nil || got != (types.NamespacedName{Namespace: "omniflow-system", Name: "pg-admin"}) {
		t.Errorf("valid flag: %v, %v", got, err)
	}
	for _, bad := range []string{"pg-admin", "/pg-admin", "omniflow-system/", "a/b/c", "Upper/x"} {
		if _, err := ParsePostgresAdminSecret(bad); err == nil || !strings.Contains(err.Error(), PostgresAdminSecretFlag) {
			t.Errorf("ParsePostgresAdminSecret(%q) = %v, want an error naming the flag", bad, err)
		}
	}
}

func TestWorkerDeploymentPerBackend(t *testing.T) {
	t.Parallel()
	pg := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"},
		Spec: platformv1.TenantSpec{Storage: platformv1.TenantStorage{Backend: platformv1.StoragePostgreSQL}, Worker: platformv1.WorkerSpec{Replicas: ptr.To(int32(3))}}}
	sqlite := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}}

	args := WorkerArgs(pg)
	if !slices.Contains(args, "--store=postgres") || slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--data-dir") }) {
		t.Errorf("PostgreSQL worker args = %q", args)
	}
	if args := WorkerArgs(sqlite); !slices.Contains(args, "--data-dir="+DataMountPath) || slices.Contains(args, "--store=postgres") {
		t.Errorf("SQLite worker args = %q", args)
	}

	dep := desiredDeployment(pg, WorkerConfig{Image: "img"}, false)
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	if len(pod.Volumes) != 0 || len(c.VolumeMounts) != 0 {
		t.Errorf("a PostgreSQL worker has no data volume: volumes %v, mounts %v", pod.Volumes, c.VolumeMounts)
	}
	if *dep.Spec.Replicas != 3 || *dep.Spec.Strategy.Type != "RollingUpdate" {
		t.Errorf("replicas %d, strategy %s", *dep.Spec.Replicas, *dep.Spec.Strategy.Type)
	}
	var found bool
	for _, e := range c.Env {
		if *e.Name == envPostgresDSN {
			found = e.Value == nil && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
				*e.ValueFrom.SecretKeyRef.Name == platformv1.PostgresSecretName && *e.ValueFrom.SecretKeyRef.Key == platformv1.PostgresSecretKey
		}
	}
	if !found {
		t.Errorf("env %s must come from Secret %s key %s: %v", envPostgresDSN, platformv1.PostgresSecretName, platformv1.PostgresSecretKey, c.Env)
	}

	dep = desiredDeployment(sqlite, WorkerConfig{Image: "img"}, false)
	pod = dep.Spec.Template.Spec
	if len(pod.Volumes) != 1 || *pod.Volumes[0].PersistentVolumeClaim.ClaimName != DataClaimName ||
		len(pod.Containers[0].VolumeMounts) != 1 || *dep.Spec.Strategy.Type != "Recreate" {
		t.Errorf("the SQLite worker keeps its data volume and Recreate: %+v", pod.Volumes)
	}
	for _, e := range pod.Containers[0].Env {
		if *e.Name == envPostgresDSN {
			t.Errorf("a SQLite worker has no %s", envPostgresDSN)
		}
	}
}

// The verifier sent to the server is the one PostgreSQL itself computes for the
// password (checked against the server's own, with its salt), so the tenant can log
// in with SCRAM; the password itself never appears in the statement.
func TestScramVerifierMatchesPostgres(t *testing.T) {
	if err := pgtest.CheckServer(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.ServerDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	password, err := newPostgresPassword()
	if err != nil {
		t.Fatal(err)
	}
	role := "omniflow_scram_probe_" + password[:8]
	if _, err := conn.Exec(ctx, "SET password_encryption = 'scram-sha-256'"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE ROLE "+quoteIdent(role)+" PASSWORD "+quoteLiteral(password)); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+quoteIdent(role)) }()
	var stored string
	if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
	head, _, ok := strings.Cut(strings.TrimPrefix(stored, "SCRAM-SHA-256$"), "$")
	iterText, saltText, ok2 := strings.Cut(head, ":")
	iterations, err := strconv.Atoi(iterText)
	salt, err2 := base64.StdEncoding.DecodeString(saltText)
	if !ok || !ok2 || err != nil || err2 != nil {
		t.Fatalf("the server stored %q, not a SCRAM verifier", stored)
	}
	ours, err := scramVerifierSalted(password, salt, iterations)
	if err != nil {
		t.Fatal(err)
	}
	if ours != stored {
		t.Fatalf("verifier %q, the server computes %q", ours, stored)
	}

	// What provisioning sends: a verifier, stable across passes, per role.
	v1, err := scramVerifier(password, "omniflow_acme")
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := scramVerifier(password, "omniflow_acme")
	v3, _ := scramVerifier(password, "omniflow_other")
	if v1 != v2 || v1 == v3 || !strings.HasPrefix(v1, "SCRAM-SHA-256$4096:") || strings.Contains(v1, password) {
		t.Fatalf("verifiers %q %q %q", v1, v2, v3)
	}
}

func TestRoleStatementWritesOnlyWhenTheVerifierIsNotKnownToBeSet(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		exists, applied bool
		want            string
	}{
		{false, false, "CREATE"},
		{false, true, "CREATE"}, // dropped by hand: the annotation does not make it exist
		{true, false, "ALTER"},
		{true, true, ""},
	} {
		if got := roleStatement(tc.exists, tc.applied); got != tc.want {
			t.Errorf("roleStatement(exists=%v, applied=%v) = %q, want %q", tc.exists, tc.applied, got, tc.want)
		}
	}
}
