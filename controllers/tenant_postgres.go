package controllers

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

const (
	// PostgresAdminSecretFlag is the manager flag that enables the PostgreSQL
	// backend; messages name it so that an SRE knows what to set.
	PostgresAdminSecretFlag = "--postgres-admin-secret"
	// postgresAdminSecretKey is the key of the admin Secret that holds the DSN.
	postgresAdminSecretKey = "dsn"
	// postgresPasswordBytes of randomness in a tenant role's password (hex encoded).
	postgresPasswordBytes = 32
	// postgresConnectTimeout bounds a connection attempt to the shared server,
	// so that an unreachable server never holds a reconcile worker for long.
	postgresConnectTimeout = 10 * time.Second
	// postgresRetry is how soon an unusable server is tried again.
	postgresRetry = 30 * time.Second
	// postgresMaxIdentifier is PostgreSQL's identifier limit (NAMEDATALEN-1):
	// longer names are silently truncated by the server, which could make two
	// tenants share a database.
	postgresMaxIdentifier = 63
	envPostgresDSN        = "OMNIFLOW_POSTGRES_DSN"
)

// PostgresConfig is the operator-wide configuration of the PostgreSQL backend.
type PostgresConfig struct {
	// AdminSecret names a Secret whose key "dsn" is the DSN of a role with
	// CREATEDB and CREATEROLE on the shared server. Empty: PostgreSQL tenants
	// are refused with StorageUnsupported.
	AdminSecret types.NamespacedName
}

func (c PostgresConfig) enabled() bool { return c.AdminSecret.Name != "" }

// ParsePostgresAdminSecret parses the value of --postgres-admin-secret,
// <namespace>/<name>; an empty value leaves the backend disabled.
func ParsePostgresAdminSecret(s string) (types.NamespacedName, error) {
	if s == "" {
		return types.NamespacedName{}, nil
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return types.NamespacedName{}, fmt.Errorf("%s: want <namespace>/<name> of a Secret, got %q", PostgresAdminSecretFlag, s)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// storageBackend is the tenant's backend with its default applied.
func storageBackend(t *platformv1.Tenant) platformv1.StorageBackend {
	if t.Spec.Storage.Backend == "" {
		return platformv1.StorageSQLite
	}
	return t.Spec.Storage.Backend
}

// postgresName is the name of both the tenant's role and its database. The
// prefix reserves the names for the operator: erasure drops exactly this
// name. Tenant names are DNS labels, so mapping '-' to '_' is the only change
// needed for a readable identifier (it is quoted anyway); a name too long for
// PostgreSQL keeps a hash of the whole, so that no two tenants share one.
func postgresName(tenant string) string {
	name := "omniflow_" + strings.ReplaceAll(tenant, "-", "_")
	if len(name) <= postgresMaxIdentifier {
		return name
	}
	sum := sha256.Sum256([]byte(tenant))
	suffix := "_" + hex.EncodeToString(sum[:4])
	return name[:postgresMaxIdentifier-len(suffix)] + suffix
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(name string) string { return pgx.Identifier{name}.Sanitize() }

// quoteLiteral quotes a string constant for statements that take no
// parameters (CREATE/ALTER ROLE … PASSWORD). An escape string is used when
// the value holds a backslash, so that the result does not depend on
// standard_conforming_strings.
func quoteLiteral(s string) string {
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		return "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}

// tenantDSN is the DSN of the tenant's own database: the admin DSN's host,
// port and sslmode, with the tenant's user, password and database, and
// nothing else of the admin's (no admin options leak to the worker). It keeps
// the admin DSN's form, URL or keyword/value.
func tenantDSN(adminDSN, user, password, database string) (string, error) {
	if strings.HasPrefix(adminDSN, "postgres://") || strings.HasPrefix(adminDSN, "postgresql://") {
		u, err := url.Parse(adminDSN)
		if err != nil {
			// The parser's error quotes the input, password included.
			return "", errors.New("the admin DSN is not a valid URL")
		}
		q := url.Values{}
		for _, k := range []string{"host", "port", "sslmode"} {
			if v := u.Query().Get(k); v != "" {
				q.Set(k, v)
			}
		}
		out := url.URL{Scheme: u.Scheme, User: url.UserPassword(user, password), Host: u.Host, Path: "/" + database, RawQuery: q.Encode()}
		return out.String(), nil
	}
	kv, err := parseKeywordValue(adminDSN)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, k := range []string{"host", "hostaddr", "port", "sslmode"} {
		if v, ok := kv[k]; ok {
			fmt.Fprintf(&b, "%s=%s ", k, quoteKV(v))
		}
	}
	fmt.Fprintf(&b, "user=%s password=%s dbname=%s", quoteKV(user), quoteKV(password), quoteKV(database))
	return b.String(), nil
}

// quoteKV quotes a value of a keyword/value DSN as libpq reads it.
func quoteKV(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// parseKeywordValue reads a libpq keyword/value connection string: values
// are bare words or single-quoted, with backslash escapes in both.
func parseKeywordValue(s string) (map[string]string, error) {
	out := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t\n\r")
		if s == "" {
			return out, nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, errors.New("the admin DSN is neither a URL nor keyword=value pairs")
		}
		key := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t\n\r")
		var val strings.Builder
		quoted := strings.HasPrefix(s, "'")
		if quoted {
			s = s[1:]
		}
		i := 0
		for ; i < len(s); i++ {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				i++
				val.WriteByte(s[i])
				continue
			}
			if (quoted && c == '\'') || (!quoted && (c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
				break
			}
			val.WriteByte(c)
		}
		if quoted {
			if i >= len(s) {
				return nil, errors.New("the admin DSN has an unterminated quoted value")
			}
			i++ // the closing quote
		}
		out[key] = val.String()
		s = s[i:]
	}
}

// newPostgresPassword is a tenant role's password.
func newPostgresPassword() (string, error) {
	b := make([]byte, postgresPasswordBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate database password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// reconcilePostgres ensures the tenant's credentials Secret, then its role
// and database on the shared server. The Secret comes first: the password
// is generated once and stored before any role carries it, so that a crash
// between the two never loses it; the role's password is set from the
// Secret on every pass, so the Secret is the truth.
func (r *TenantReconciler) reconcilePostgres(ctx context.Context, t *platformv1.Tenant) (*ctrl.Result, error) {
	if !r.Postgres.enabled() {
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionStorageReady, false, platformv1.ReasonStorageUnsupported,
			fmt.Sprintf("storage backend PostgreSQL needs the manager flag %s=<namespace>/<name>, a Secret whose key %s is the DSN of a role with CREATEDB and CREATEROLE; it is not set",
				PostgresAdminSecretFlag, postgresAdminSecretKey))
		t.Status.Phase = platformv1.TenantPhaseFailed
		return stop, reconcile.TerminalError(fmt.Errorf("storage backend PostgreSQL: %s is not set", PostgresAdminSecretFlag))
	}
	name := postgresName(t.Name)
	// Recorded before anything exists on the server: erasure drops what
	// status names, and a half-done provisioning must be erased too.
	t.Status.Storage = &platformv1.StorageStatus{Backend: platformv1.StoragePostgreSQL, DatabaseName: name}
	admin, err := r.postgresAdminDSN(ctx)
	if err != nil {
		return r.databaseUnavailable(ctx, t, err)
	}
	password, err := r.ensurePostgresSecret(ctx, t, admin, name)
	if err != nil {
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionStorageReady, false, platformv1.ReasonApplyFailed, err.Error())
		return nil, err
	}
	host, err := provisionDatabase(ctx, admin, name, password)
	if err != nil {
		return r.databaseUnavailable(ctx, t, err)
	}
	setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionStorageReady, true, platformv1.ReasonDatabaseReady,
		fmt.Sprintf("database %s on %s is ready; its credentials are in Secret %s", name, host, platformv1.PostgresSecretName))
	return nil, nil
}

// databaseUnavailable reports a server (or admin Secret) that cannot be used
// now and looks again later: it is an outage to wait out, not a bad spec.
func (r *TenantReconciler) databaseUnavailable(ctx context.Context, t *platformv1.Tenant, err error) (*ctrl.Result, error) {
	logf.FromContext(ctx).V(1).Info("PostgreSQL server unavailable; retrying", "error", err.Error(), "after", postgresRetry)
	setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionStorageReady, false, platformv1.ReasonDatabaseUnavailable, err.Error())
	return &ctrl.Result{RequeueAfter: postgresRetry}, nil
}

// postgresAdminDSN reads the admin DSN around the cache: the cache holds
// only the Secrets of tenant namespaces. Errors never quote the DSN.
func (r *TenantReconciler) postgresAdminDSN(ctx context.Context) (string, error) {
	ref := r.Postgres.AdminSecret
	var s corev1.Secret
	if err := r.APIReader.Get(ctx, ref, &s); err != nil {
		return "", fmt.Errorf("read PostgreSQL admin Secret %s (%s): %w", ref, PostgresAdminSecretFlag, err)
	}
	dsn := string(s.Data[postgresAdminSecretKey])
	if dsn == "" {
		return "", fmt.Errorf("PostgreSQL admin Secret %s has no key %s", ref, postgresAdminSecretKey)
	}
	if _, err := pgconn.ParseConfig(dsn); err != nil {
		return "", fmt.Errorf("key %s of PostgreSQL admin Secret %s is not a valid DSN", postgresAdminSecretKey, ref)
	}
	return dsn, nil
}

// ensurePostgresSecret creates the tenant's credentials Secret once and
// keeps its DSN in line with the admin DSN's host, never changing the
// password it holds. It returns that password.
func (r *TenantReconciler) ensurePostgresSecret(ctx context.Context, t *platformv1.Tenant, admin, name string) (string, error) {
	key := types.NamespacedName{Namespace: t.NamespaceName(), Name: platformv1.PostgresSecretName}
	var s corev1.Secret
	err := r.APIReader.Get(ctx, key, &s)
	if err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("get Secret %s: %w", key, err)
	}
	var password string
	if err == nil {
		// A Secret emptied or broken by hand gets a new password; the role
		// follows the Secret below.
		if cfg, perr := pgconn.ParseConfig(string(s.Data[platformv1.PostgresSecretKey])); perr == nil {
			password = cfg.Password
		}
	}
	if password == "" {
		if password, err = newPostgresPassword(); err != nil {
			return "", err
		}
	}
	dsn, err := tenantDSN(admin, name, password, name)
	if err != nil {
		return "", fmt.Errorf("build the tenant DSN: %w", err)
	}
	if s.UID == "" {
		s = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: key.Name, Namespace: key.Namespace, Labels: tenantLabels(t),
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: platformv1.GroupVersion.String(), Kind: "Tenant", Name: t.Name, UID: t.UID,
					Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
				}},
			},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{platformv1.PostgresSecretKey: []byte(dsn)},
		}
		// AlreadyExists: another pass created it meanwhile; the retry reads it.
		if err := r.Create(ctx, &s, client.FieldOwner(fieldOwner)); err != nil {
			return "", fmt.Errorf("create Secret %s: %w", key, err)
		}
		logCreated(ctx, "Secret", &s)
		return password, nil
	}
	if string(s.Data[platformv1.PostgresSecretKey]) != dsn {
		patch := client.MergeFrom(s.DeepCopy())
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		s.Data[platformv1.PostgresSecretKey] = []byte(dsn)
		if err := r.Patch(ctx, &s, patch, client.FieldOwner(fieldOwner)); err != nil {
			return "", fmt.Errorf("update Secret %s: %w", key, err)
		}
	}
	return password, nil
}

// connectAdmin connects to the shared server as the admin role. host names
// the server for messages (never the DSN: it holds a password).
func connectAdmin(ctx context.Context, dsn string) (conn *pgx.Conn, host string, err error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, "", errors.New("the PostgreSQL admin DSN is not valid")
	}
	host = net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > postgresConnectTimeout {
		cfg.ConnectTimeout = postgresConnectTimeout
	}
	// pgconn's connect errors name the user and database, not the password.
	conn, err = pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, host, fmt.Errorf("connect to PostgreSQL server %s: %w", host, err)
	}
	return conn, host, nil
}

// provisionDatabase ensures the tenant's role (with the Secret's password)
// and its database, closed to every other role. It returns the server's
// host for messages.
func provisionDatabase(ctx context.Context, admin, name, password string) (string, error) {
	conn, host, err := connectAdmin(ctx, admin)
	if err != nil {
		return host, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	ident := quoteIdent(name)
	roleExists, err := exists(ctx, conn, "pg_roles", "rolname", name)
	if err != nil {
		return host, err
	}
	verb := "CREATE"
	if roleExists {
		verb = "ALTER"
	}
	// The server gets a SCRAM-SHA-256 verifier, never the password itself, so
	// that a server logging statements (log_statement) cannot log it; the
	// statement's error never quotes the statement either.
	verifier, err := scramVerifier(password, name)
	if err != nil {
		return host, err
	}
	if _, err := conn.Exec(ctx, verb+" ROLE "+ident+" WITH LOGIN PASSWORD "+quoteLiteral(verifier)); err != nil {
		return host, fmt.Errorf("%s role %s on %s: %w", strings.ToLower(verb), name, host, err)
	}
	dbExists, err := exists(ctx, conn, "pg_database", "datname", name)
	if err != nil {
		return host, err
	}
	if !dbExists {
		// Since PostgreSQL 16 a CREATEROLE admin may give a database to a
		// role only as a member of it; a superuser or an older server
		// accepts the grant as a no-op.
		if _, err := conn.Exec(ctx, "GRANT "+ident+" TO CURRENT_USER"); err != nil {
			return host, fmt.Errorf("grant role %s to the admin on %s: %w", name, host, err)
		}
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident+" OWNER "+ident); err != nil {
			return host, fmt.Errorf("create database %s on %s: %w", name, host, err)
		}
	}
	// Every database is open to PUBLIC by default: only the owner may
	// connect to a tenant's.
	if _, err := conn.Exec(ctx, "REVOKE CONNECT ON DATABASE "+ident+" FROM PUBLIC"); err != nil {
		return host, fmt.Errorf("revoke connect on database %s on %s: %w", name, host, err)
	}
	return host, nil
}

// scramIterations is PostgreSQL's default (scram_iterations) for SCRAM-SHA-256.
const scramIterations = 4096

// scramVerifier is the SCRAM-SHA-256 verifier PostgreSQL stores for password
// (RFC 5802 and 7677, in PostgreSQL's "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"
// form), which CREATE/ALTER ROLE ... PASSWORD stores as is. The salt is derived
// from the password and the role, so an unchanged password gives the same
// verifier on every pass. The password is hex: SASLprep leaves it unchanged.
func scramVerifier(password, role string) (string, error) {
	seed := hmac.New(sha256.New, []byte(password))
	seed.Write([]byte("omniflow scram salt " + role))
	return scramVerifierSalted(password, seed.Sum(nil)[:16], scramIterations)
}

func scramVerifierSalted(password string, salt []byte, iterations int) (string, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("derive database password verifier: %w", err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(stored[:]), b64(mac(salted, "Server Key"))), nil
}

// exists reports whether a catalog (pg_roles, pg_database) has a row named name.
func exists(ctx context.Context, conn *pgx.Conn, catalog, column, name string) (bool, error) {
	var found bool
	q := "SELECT EXISTS (SELECT 1 FROM " + catalog + " WHERE " + column + " = $1)"
	if err := conn.QueryRow(ctx, q, name).Scan(&found); err != nil {
		return false, fmt.Errorf("look up %s in %s: %w", name, catalog, err)
	}
	return found, nil
}

// postgresDatabase is the tenant's database and role: as recorded in
// status, else the name provisioning gives it.
func postgresDatabase(t *platformv1.Tenant) string {
	if t.Status.Storage != nil && t.Status.Storage.DatabaseName != "" {
		return t.Status.Storage.DatabaseName
	}
	return postgresName(t.Name)
}

// dropPostgres is PostgreSQL's DeleteStorage: it drops the tenant's
// database (closing its connections) and role, and verifies on the server
// that neither is left. An unusable server is an error, so the step is
// retried and never skipped; ErasureAtRisk (or the sweep's failure Event and
// metric) raises the alarm if it lasts.
func (r *TenantReconciler) dropPostgres(ctx context.Context, tgt *erasureTarget) (string, bool, error) {
	name := tgt.Database
	if name == "" {
		return "", false, fmt.Errorf("no PostgreSQL database is recorded for tenant %s", tgt.Name)
	}
	if !r.Postgres.enabled() {
		return "", false, fmt.Errorf("database %s cannot be dropped: the manager flag %s is not set", name, PostgresAdminSecretFlag)
	}
	admin, err := r.postgresAdminDSN(ctx)
	if err != nil {
		return "", false, err
	}
	conn, host, err := connectAdmin(ctx, admin)
	if err != nil {
		return "", false, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	ident := quoteIdent(name)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return "", false, fmt.Errorf("drop database %s on %s: %w", name, host, err)
	}
	if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+ident); err != nil {
		return "", false, fmt.Errorf("drop role %s on %s: %w", name, host, err)
	}
	var left []string
	for _, c := range []struct{ catalog, column string }{{"pg_database", "datname"}, {"pg_roles", "rolname"}} {
		found, err := exists(ctx, conn, c.catalog, c.column, name)
		if err != nil {
			return "", false, err
		}
		if found {
			left = append(left, c.catalog)
		}
	}
	if len(left) > 0 {
		return "waiting for " + name + " to be gone from " + strings.Join(left, " and ") + " on " + host, false, nil
	}
	return fmt.Sprintf("database and role %s dropped on %s (DROP DATABASE WITH (FORCE), DROP ROLE); pg_database and pg_roles have no row named %s",
		name, host, name), true, nil
}
