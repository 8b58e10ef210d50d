package controllers

import (
	"context"
	"encoding/base64"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
)

func TestPostgresNameIsBoundToTheTenantUID(t *testing.T) {
	t.Parallel()
	const uid = types.UID("0b9c6f3e-1111-4a2b-8c3d-123456789abc")
	long := strings.Repeat("a", 54) + "-x"   // 56: the longest name without spec.namespace
	longer := strings.Repeat("a", 54) + "-y" // differs only past PostgreSQL's 63 bytes
	tests := []struct {
		tenant     string
		wantPrefix string
	}{
		{"acme", "omniflow_acme_"},
		{"acme-shop-2", "omniflow_acme_shop_2_"},
		{long, "omniflow_" + strings.Repeat("a", 45)},
	}
	for _, tc := range tests {
		got := postgresName(tc.tenant, uid)
		if !strings.HasPrefix(got, tc.wantPrefix) || len(got) > postgresMaxIdentifier {
			t.Errorf("postgresName(%q) = %q (%d bytes), want prefix %q and at most %d bytes", tc.tenant, got, len(got), tc.wantPrefix, postgresMaxIdentifier)
		}
		if suffix := got[len(got)-9:]; !regexp.MustCompile(`^_[0-9a-f]{8}$`).MatchString(suffix) {
			t.Errorf("postgresName(%q) = %q does not end in a UID hash", tc.tenant, got)
		}
		if postgresName(tc.tenant, uid) != got {
			t.Errorf("postgresName(%q) is not stable", tc.tenant)
		}
	}
	// The same name under another UID (a re-created Tenant) is another database.
	if postgresName("acme", uid) == postgresName("acme", "another-uid") {
		t.Error("a re-created Tenant gets its predecessor's database name")
	}
	if a, b := postgresName(long, uid), postgresName(longer, "another-uid"); len(a) != postgresMaxIdentifier || a == b {
		t.Errorf("long names: %q and %q", a, b)
	}
	// A tenant provisioned before the binding keeps the name in its status.
	old := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme", UID: uid},
		Status: platformv1.TenantStatus{Storage: &platformv1.StorageStatus{DatabaseName: "omniflow_acme"}}}
	if got := postgresDatabase(old); got != "omniflow_acme" {
		t.Errorf("postgresDatabase of a recorded tenant = %q, want omniflow_acme", got)
	}
}

func TestDBMarkRoundTripsAndOnlyOursParse(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	m := dbMark{Cluster: "c-1", Tenant: "acme", TenantUID: "u-1", OrphanedAt: &at}
	got, ok := parseDBMark(m.String())
	if !ok || got.Cluster != "c-1" || got.Tenant != "acme" || got.TenantUID != "u-1" || got.OrphanedAt == nil || !got.OrphanedAt.Equal(at) {
		t.Fatalf("parseDBMark(%q) = %+v, %v", m.String(), got, ok)
	}
	for _, c := range []string{"", "production database", "omniflow: cluster=c-1 tenant=acme", "omniflow cluster=c-1 tenant-uid=u-1"} {
		if _, ok := parseDBMark(c); ok {
			t.Errorf("parseDBMark(%q) is taken for an Omniflow mark", c)
		}
	}
	if got, _ := parseDBMark("omniflow: cluster=c tenant=a tenant-uid=u orphaned-at=yesterday"); got.OrphanedAt != nil {
		t.Error("a mangled stamp must count as none")
	}
}

func TestServerObjectIsForeignOnlyWhenBoundToAnotherTenant(t *testing.T) {
	t.Parallel()
	mark := func(uid types.UID) string { return dbMark{Cluster: "c", Tenant: "a", TenantUID: uid}.String() }
	tests := []struct {
		name string
		obj  serverObject
		want bool
	}{
		{"absent", serverObject{}, false},
		{"ours", serverObject{Exists: true, Comment: mark("u-1")}, false},
		{"from before the binding (no comment)", serverObject{Exists: true}, false},
		{"someone else's text", serverObject{Exists: true, Comment: "prod"}, false},
		{"another Tenant's", serverObject{Exists: true, Comment: mark("u-2")}, true},
		{"owned by the tenant's role, comment rewritten by that role", serverObject{Exists: true, Comment: mark("u-2"), OwnerComment: mark("u-1")}, false},
		{"owned by another Tenant's role", serverObject{Exists: true, Comment: mark("u-1"), OwnerComment: mark("u-2")}, true},
	}
	for _, tc := range tests {
		if got := tc.obj.foreignTo("u-1"); got != tc.want {
			t.Errorf("%s: foreignTo = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDatabaseMarkPrefersTheOwnerRoleAndKeepsOnlyItsOwnStamp(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	role := dbMark{Cluster: "c", Tenant: "a", TenantUID: "u-1"}.String()
	stamped := dbMark{Cluster: "c", Tenant: "a", TenantUID: "u-1", OrphanedAt: &at}.String()
	forged := dbMark{Cluster: "elsewhere", Tenant: "b", TenantUID: "u-2", OrphanedAt: &at}.String()
	tests := []struct {
		name, comment, owner string
		wantOK               bool
		wantUID              types.UID
		wantStamp            bool
	}{
		{"no mark anywhere", "", "", false, "", false},
		{"database mark only (owner role unmarked)", stamped, "", true, "u-1", true},
		{"role mark, database stamped", stamped, role, true, "u-1", true},
		{"role mark, database comment forged by the tenant", forged, role, true, "u-1", false},
	}
	for _, tc := range tests {
		m, ok := databaseMark(tc.comment, tc.owner)
		if ok != tc.wantOK || m.TenantUID != tc.wantUID || (m.OrphanedAt != nil) != tc.wantStamp {
			t.Errorf("%s: databaseMark = %+v, %v", tc.name, m, ok)
		}
		if ok && tc.owner != "" && m.Cluster != "c" {
			t.Errorf("%s: cluster %q, want the role's", tc.name, m.Cluster)
		}
	}
}

func TestOrphanDatabasesAreThoseOfThisClusterWithNoOwnerLeft(t *testing.T) {
	t.Parallel()
	db := func(name, cluster string, uid types.UID) serverDatabase {
		return serverDatabase{Name: name, Mark: dbMark{Cluster: cluster, Tenant: "t", TenantUID: uid}}
	}
	dbs := []serverDatabase{
		db("live", "c", "u-live"),
		db("marked-ns", "c", "u-ns"),
		db("orphan", "c", "u-gone"),
		db("other-cluster", "c2", "u-gone2"),
	}
	tenants := liveOf(platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "live", UID: "u-live"}})
	nss := []*metav1.PartialObjectMetadata{
		{ObjectMeta: metav1.ObjectMeta{Name: "tenant-x", Annotations: map[string]string{AnnotationTenantUID: "u-ns"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "unmarked"}},
	}
	orphans, ours := orphanDatabases(dbs, "c", tenants, nss)
	if ours != 3 || len(orphans) != 1 || orphans[0].Name != "orphan" {
		t.Fatalf("orphanDatabases = %+v (ours %d), want only \"orphan\" of 3", orphans, ours)
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
