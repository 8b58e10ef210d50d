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

// postgresName is the name of both the role and the database of a new
// tenant. The prefix reserves the names for the operator; tenant names are
// DNS labels, so mapping '-' to '_' is the only change needed for a readable
// identifier (it is quoted anyway). The suffix is a short hash of the
// Tenant's UID: a Tenant deleted and created again under the same name gets
// a database of its own, never its predecessor's. The tenant part is cut so
// that the whole fits PostgreSQL's identifier limit (which would otherwise
// truncate it silently); the UID hash is always kept whole.
func postgresName(tenant string, uid types.UID) string {
	sum := sha256.Sum256([]byte(uid))
	suffix := "_" + hex.EncodeToString(sum[:4])
	name := "omniflow_" + strings.ReplaceAll(tenant, "-", "_")
	if len(name)+len(suffix) > postgresMaxIdentifier {
		name = name[:postgresMaxIdentifier-len(suffix)]
	}
	return name + suffix
}

// PostgresDatabaseName is the database (and role) name a new PostgreSQL
// Tenant of this name and UID is given: what an SRE looks for on the server.
func PostgresDatabaseName(tenant string, uid types.UID) string { return postgresName(tenant, uid) }

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
	name := postgresDatabase(t)
	// Recorded before anything exists on the server: erasure drops what
	// status names, and a half-done provisioning must be erased too.
	t.Status.Storage = &platformv1.StorageStatus{Backend: platformv1.StoragePostgreSQL, DatabaseName: name}
	admin, err := r.postgresAdminDSN(ctx)
	if err != nil {
		return r.databaseUnavailable(ctx, t, err)
	}
	mark, err := r.tenantDBMark(ctx, t)
	if err != nil {
		return r.databaseUnavailable(ctx, t, err)
	}
	secret, password, err := r.ensurePostgresSecret(ctx, t, admin, name)
	if err != nil {
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionStorageReady, false, platformv1.ReasonApplyFailed, err.Error())
		return nil, err
	}
	verifier, err := scramVerifier(password, name)
	if err != nil {
		return nil, err
	}
	applied := secret.Annotations[appliedVerifierAnnotation] == verifierDigest(verifier)
	host, err := provisionDatabase(ctx, admin, name, verifier, applied, mark)
	if errors.Is(err, errDatabaseConflict) {
		// Not an outage and not the tenant's: nothing of it is touched or
		// shown. Looked at again later, in case an SRE resolves it.
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionStorageReady, false, platformv1.ReasonDatabaseConflict, err.Error())
		t.Status.Phase = platformv1.TenantPhaseFailed
		return &ctrl.Result{RequeueAfter: postgresRetry}, nil
	}
	if err != nil {
		return r.databaseUnavailable(ctx, t, err)
	}
	if err := r.recordAppliedVerifier(ctx, secret, verifier); err != nil {
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionStorageReady, false, platformv1.ReasonApplyFailed, err.Error())
		return nil, err
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
// password it holds. It returns the Secret and that password.
func (r *TenantReconciler) ensurePostgresSecret(ctx context.Context, t *platformv1.Tenant, admin, name string) (*corev1.Secret, string, error) {
	key := types.NamespacedName{Namespace: t.NamespaceName(), Name: platformv1.PostgresSecretName}
	var s corev1.Secret
	err := r.APIReader.Get(ctx, key, &s)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, "", fmt.Errorf("get Secret %s: %w", key, err)
	}
	var password string
	// A predecessor's Secret (a Tenant re-created under the same name and
	// namespace) holds the password of the predecessor's role, which can
	// still log into its database until the sweep drops it: it is never
	// reused. The Secret is taken over with a new password.
	owned := err == nil && tenantOwns(&s, refOf(t))
	if owned {
		// A Secret emptied or broken by hand gets a new password; the role
		// follows the Secret below.
		if cfg, perr := pgconn.ParseConfig(string(s.Data[platformv1.PostgresSecretKey])); perr == nil {
			password = cfg.Password
		}
	}
	if password == "" {
		if password, err = newPostgresPassword(); err != nil {
			return nil, "", err
		}
	}
	dsn, err := tenantDSN(admin, name, password, name)
	if err != nil {
		return nil, "", fmt.Errorf("build the tenant DSN: %w", err)
	}
	if s.UID == "" {
		s = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: key.Name, Namespace: key.Namespace, Labels: tenantLabels(t),
				OwnerReferences: []metav1.OwnerReference{postgresSecretOwner(t)},
			},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{platformv1.PostgresSecretKey: []byte(dsn)},
		}
		// AlreadyExists: another pass created it meanwhile; the retry reads it.
		if err := r.Create(ctx, &s, client.FieldOwner(fieldOwner)); err != nil {
			return nil, "", fmt.Errorf("create Secret %s: %w", key, err)
		}
		logCreated(ctx, "Secret", &s)
		return &s, password, nil
	}
	if !owned || string(s.Data[platformv1.PostgresSecretKey]) != dsn {
		patch := client.MergeFrom(s.DeepCopy())
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		s.Data[platformv1.PostgresSecretKey] = []byte(dsn)
		if !owned {
			s.Labels = tenantLabels(t)
			s.OwnerReferences = []metav1.OwnerReference{postgresSecretOwner(t)}
		}
		if err := r.Patch(ctx, &s, patch, client.FieldOwner(fieldOwner)); err != nil {
			return nil, "", fmt.Errorf("update Secret %s: %w", key, err)
		}
	}
	return &s, password, nil
}

// postgresSecretOwner binds the credentials Secret to its Tenant.
func postgresSecretOwner(t *platformv1.Tenant) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: platformv1.GroupVersion.String(), Kind: "Tenant", Name: t.Name, UID: t.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}
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

// appliedVerifierAnnotation on the tenant's credentials Secret holds the digest
// of the SCRAM verifier last set on the tenant's role, written once the server
// took it. An unchanged password then costs the server no write on the next
// pass; a new password (the Secret recreated, or its DSN edited) gives a new
// verifier, which is set. A role whose password was changed on the server by
// hand is set again once this annotation is removed.
const appliedVerifierAnnotation = "platform.omniflowcrm.com/applied-role-verifier"

// verifierDigest names a verifier without revealing it (it is as good as the
// password against the server).
func verifierDigest(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// recordAppliedVerifier notes on the Secret that the role carries verifier.
func (r *TenantReconciler) recordAppliedVerifier(ctx context.Context, s *corev1.Secret, verifier string) error {
	digest := verifierDigest(verifier)
	if s.Annotations[appliedVerifierAnnotation] == digest {
		return nil
	}
	patch := client.MergeFrom(s.DeepCopy())
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[appliedVerifierAnnotation] = digest
	if err := r.Patch(ctx, s, patch, client.FieldOwner(fieldOwner)); err != nil {
		return fmt.Errorf("record the applied role password on Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// provisionDatabase ensures the tenant's role (with the Secret's password, as
// its SCRAM verifier) and its database, closed to every other role, both
// bound to the Tenant's UID by their comment (mark). applied says the role
// already carries verifier. A role or database of that name bound to another
// Tenant is left exactly as it is: errDatabaseConflict. At steady state it
// only reads the catalogs: every statement that writes runs only when
// something differs. It returns the server's host for messages.
func provisionDatabase(ctx context.Context, admin, name, verifier string, applied bool, mark dbMark) (string, error) {
	conn, host, err := connectAdmin(ctx, admin)
	if err != nil {
		return host, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	ident := quoteIdent(name)
	role, err := lookupServerObject(ctx, conn, "role", name)
	if err != nil {
		return host, err
	}
	db, err := lookupServerObject(ctx, conn, "database", name)
	if err != nil {
		return host, err
	}
	// Checked before anything is written: taking over another Tenant's role
	// (its password) or database would hand its data to this tenant.
	for kind, o := range map[string]serverObject{"role": role, "database": db} {
		if o.foreignTo(mark.TenantUID) {
			return host, fmt.Errorf("%w: %s %s on %s exists and is bound to another Tenant (uid %s); it is not adopted",
				errDatabaseConflict, kind, name, host, o.boundTo())
		}
	}
	if verb := roleStatement(role.Exists, applied); verb != "" {
		// The server gets a SCRAM-SHA-256 verifier, never the password itself, so
		// that a server logging statements (log_statement) cannot log it; the
		// statement's error never quotes the statement either.
		if _, err := conn.Exec(ctx, verb+" ROLE "+ident+" WITH LOGIN PASSWORD "+quoteLiteral(verifier)); err != nil {
			return host, fmt.Errorf("%s role %s on %s: %w", strings.ToLower(verb), name, host, err)
		}
	}
	if err := setComment(ctx, conn, "role", name, role, mark.String()); err != nil {
		return host, err
	}
	if !db.Exists {
		// Since PostgreSQL 16 a CREATEROLE admin may give a database to a
		// role, or later comment on it, only as a member of the role; a
		// superuser or an older server accepts the grant as a no-op.
		if _, err := conn.Exec(ctx, "GRANT "+ident+" TO CURRENT_USER"); err != nil {
			return host, fmt.Errorf("grant role %s to the admin on %s: %w", name, host, err)
		}
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident+" OWNER "+ident); err != nil {
			return host, fmt.Errorf("create database %s on %s: %w", name, host, err)
		}
	}
	// Also clears an orphan stamp the sweep may have left (a Tenant restored
	// with its UID, from a backup of etcd).
	if err := setComment(ctx, conn, "database", name, db, mark.String()); err != nil {
		return host, err
	}
	// Every database is open to PUBLIC by default: only the owner may
	// connect to a tenant's. Looked at first: a REVOKE rewrites the catalog
	// row even when it changes nothing.
	var open bool
	if err := conn.QueryRow(ctx, "SELECT has_database_privilege('public', $1, 'CONNECT')", name).Scan(&open); err != nil {
		return host, fmt.Errorf("look up who may connect to database %s on %s: %w", name, host, err)
	}
	if open {
		if _, err := conn.Exec(ctx, "REVOKE CONNECT ON DATABASE "+ident+" FROM PUBLIC"); err != nil {
			return host, fmt.Errorf("revoke connect on database %s on %s: %w", name, host, err)
		}
	}
	return host, nil
}

// roleStatement is the statement that gives the tenant's role its password:
// CREATE for a missing role, ALTER for one whose verifier is not known to be
// the Secret's, none when it is.
func roleStatement(roleExists, applied bool) string {
	switch {
	case !roleExists:
		return "CREATE"
	case !applied:
		return "ALTER"
	}
	return ""
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

// postgresDatabase is the tenant's database and role: as recorded in
// status (a tenant provisioned before databases were bound to UIDs keeps its
// name, omniflow_<tenant>), else the name bound to its UID.
func postgresDatabase(t *platformv1.Tenant) string {
	if t.Status.Storage != nil && t.Status.Storage.DatabaseName != "" {
		return t.Status.Storage.DatabaseName
	}
	return postgresName(t.Name, t.UID)
}

// dropPostgres is PostgreSQL's DeleteStorage: it drops the tenant's
// database (closing its connections) and role, and verifies on the server
// that neither is left. Only what is the tenant's is dropped: a database or
// role whose comment names the target's Tenant UID, or, for one made before
// databases were bound to UIDs (no Omniflow comment), the name recorded in
// the target (status or the namespace's mark). One whose comment names
// another Tenant is left alone and recorded as such. An unusable server is
// an error, so the step is retried and never skipped; ErasureAtRisk (or the
// sweep's failure Event and metric) raises the alarm if it lasts.
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
	// The database first: the role owns it and cannot go before it.
	found := map[string]serverObject{}
	for _, kind := range []string{"database", "role"} {
		o, err := lookupServerObject(ctx, conn, kind, name)
		if err != nil {
			return "", false, err
		}
		found[kind] = o
		if !o.Exists || o.foreignTo(tgt.UID) {
			continue
		}
		stmt := "DROP ROLE IF EXISTS " + quoteIdent(name)
		if kind == "database" {
			stmt = "DROP DATABASE IF EXISTS " + quoteIdent(name) + " WITH (FORCE)"
		}
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return "", false, fmt.Errorf("drop %s %s on %s: %w", kind, name, host, err)
		}
	}
	// Verified on the server: what was the tenant's is gone.
	var left, parts []string
	dropped := 0
	for _, kind := range []string{"database", "role"} {
		now, err := lookupServerObject(ctx, conn, kind, name)
		if err != nil {
			return "", false, err
		}
		view := serverCatalogs[kind]
		switch before := found[kind]; {
		case before.foreignTo(tgt.UID):
			parts = append(parts, fmt.Sprintf("%s on %s (the server binds it to Tenant uid %s)", notTheTenants(kind, name), host, before.boundTo()))
		case now.Exists && !now.foreignTo(tgt.UID):
			left = append(left, view)
		case before.Exists:
			dropped++
			parts = append(parts, fmt.Sprintf("%s %s dropped on %s; %s has no row named %s", kind, name, host, view, name))
		default:
			parts = append(parts, fmt.Sprintf("%s %s not found on %s; %s has no row named %s", kind, name, host, view, name))
		}
	}
	switch {
	case len(left) > 0:
		return "waiting for " + name + " to be gone from " + strings.Join(left, " and ") + " on " + host, false, nil
	case dropped == 2:
		return fmt.Sprintf("database and role %s dropped on %s (DROP DATABASE WITH (FORCE), DROP ROLE); pg_database and pg_roles have no row named %s",
			name, host, name), true, nil
	}
	return strings.Join(parts, "; "), true, nil
}
