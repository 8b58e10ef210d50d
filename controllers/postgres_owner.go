package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// The operator binds a tenant's database and role on the shared server to
// the Tenant's UID with a COMMENT (COMMENT ON DATABASE, COMMENT ON ROLE),
// the server-side twin of the namespace's AnnotationTenantUID mark:
//
//	omniflow: cluster=<uid of kube-system> tenant=<name> tenant-uid=<uid> [orphaned-at=<RFC 3339>]
//
// Provisioning never adopts, and erasure never drops, a database or role
// whose comment names another Tenant UID. The cluster is the UID of the
// cluster's kube-system namespace: two installations that share one server
// never take each other's databases for orphans. orphaned-at is written by
// the orphan sweep when it finds a database whose Tenant is gone and whose
// namespace is gone too: the grace period runs from then, and survives
// operator restarts because it lives on the server with the database.
const dbMarkPrefix = "omniflow:"

// dbMark is the parsed comment.
type dbMark struct {
	Cluster    string
	Tenant     string
	TenantUID  types.UID
	OrphanedAt *time.Time
}

// String is the comment that records m.
func (m dbMark) String() string {
	s := fmt.Sprintf("%s cluster=%s tenant=%s tenant-uid=%s", dbMarkPrefix, m.Cluster, m.Tenant, m.TenantUID)
	if m.OrphanedAt != nil {
		s += " orphaned-at=" + m.OrphanedAt.UTC().Format(time.RFC3339)
	}
	return s
}

// parseDBMark reads a comment. ok is false for a comment that is not the
// operator's (none, someone else's text, or one without a tenant UID): such
// a database carries no binding at all.
func parseDBMark(comment string) (m dbMark, ok bool) {
	rest, found := strings.CutPrefix(comment, dbMarkPrefix)
	if !found {
		return dbMark{}, false
	}
	for _, f := range strings.Fields(rest) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "cluster":
			m.Cluster = v
		case "tenant":
			m.Tenant = v
		case "tenant-uid":
			m.TenantUID = types.UID(v)
		case "orphaned-at":
			// A stamp that does not parse counts as none: the sweep stamps
			// it again from now, never erasing early.
			if at, err := time.Parse(time.RFC3339, v); err == nil {
				m.OrphanedAt = &at
			}
		}
	}
	return m, m.TenantUID != ""
}

// serverObject is a database or role as found on the server.
type serverObject struct {
	Exists bool
	// Comment is its comment, "" when it has none.
	Comment string
	// OwnerComment is, for a database, its owner role's comment.
	OwnerComment string
}

// boundTo is the Tenant UID the server binds an existing object to; ""
// when it carries no Omniflow mark. For a database, the mark of its owner
// role comes first: the tenant's role owns its database and so may change
// the database's comment, but not its own role's (that takes CREATEROLE),
// so a tenant cannot make its database look like another's to escape its
// erasure.
func (o serverObject) boundTo() types.UID {
	for _, c := range []string{o.OwnerComment, o.Comment} {
		if m, ok := parseDBMark(c); ok {
			return m.TenantUID
		}
	}
	return ""
}

// foreignTo reports whether the object exists and is bound to another
// Tenant than uid. An object without a mark is not foreign: provisioning
// and erasure only ever ask about the name recorded for (or derived from
// the UID of) the tenant, and a database from before this binding, or one
// created by a pass that crashed before its COMMENT, has none.
func (o serverObject) foreignTo(uid types.UID) bool {
	other := o.boundTo()
	return o.Exists && other != "" && other != uid
}

// serverCatalogs are the catalogs that list a tenant's objects, by kind.
var serverCatalogs = map[string]string{"database": "pg_database", "role": "pg_roles"}

// lookupServerObject reads a database or role (kind "database" or "role")
// and its comment (and a database's owner's).
func lookupServerObject(ctx context.Context, conn *pgx.Conn, kind, name string) (serverObject, error) {
	var comment, owner *string
	var err error
	if kind == "database" {
		err = conn.QueryRow(ctx, `SELECT shobj_description(d.oid, 'pg_database'), shobj_description(r.oid, 'pg_authid')
			FROM pg_database d LEFT JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1`, name).Scan(&comment, &owner)
	} else {
		err = conn.QueryRow(ctx, "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", name).Scan(&comment)
	}
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return serverObject{}, nil
	case err != nil:
		return serverObject{}, fmt.Errorf("look up %s %s: %w", kind, name, err)
	}
	deref := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	return serverObject{Exists: true, Comment: deref(comment), OwnerComment: deref(owner)}, nil
}

// setComment records a mark on a database or role, if it is not already
// the one recorded.
func setComment(ctx context.Context, conn *pgx.Conn, kind, name string, have serverObject, want string) error {
	if have.Comment == want {
		return nil
	}
	stmt := "COMMENT ON " + strings.ToUpper(kind) + " " + quoteIdent(name) + " IS " + quoteLiteral(want)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("record the tenant's UID on %s %s: %w", kind, name, err)
	}
	return nil
}

// serverDatabase is a database the orphan sweep found on the server with
// an Omniflow mark.
type serverDatabase struct {
	Name string
	Mark dbMark
}

// listMarkedDatabases lists the databases that carry an Omniflow mark, on
// themselves or on their owner role; no other database is ever looked at.
func listMarkedDatabases(ctx context.Context, conn *pgx.Conn) ([]serverDatabase, error) {
	rows, err := conn.Query(ctx, `SELECT d.datname, coalesce(shobj_description(d.oid, 'pg_database'), ''), coalesce(shobj_description(r.oid, 'pg_authid'), '')
		FROM pg_database d LEFT JOIN pg_roles r ON r.oid = d.datdba ORDER BY d.datname`)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	var out []serverDatabase
	for rows.Next() {
		var name, comment, owner string
		if err := rows.Scan(&name, &comment, &owner); err != nil {
			return nil, fmt.Errorf("list databases: %w", err)
		}
		if m, ok := databaseMark(comment, owner); ok {
			out = append(out, serverDatabase{Name: name, Mark: m})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	return out, nil
}

// databaseMark is the mark that binds a database: its owner role's if it
// has one (see boundTo), else its own; the orphan stamp lives in the
// database's own comment and counts only when that names the same Tenant.
func databaseMark(comment, ownerComment string) (dbMark, bool) {
	own, ownOK := parseDBMark(comment)
	m, ok := parseDBMark(ownerComment)
	if !ok {
		return own, ownOK
	}
	m.OrphanedAt = nil
	if ownOK && own.TenantUID == m.TenantUID {
		m.OrphanedAt = own.OrphanedAt
	}
	return m, true
}

// clusterID is the UID of the cluster's kube-system namespace, read once:
// the installation's name in the marks on the shared server.
func (r *TenantReconciler) clusterID(ctx context.Context) (string, error) {
	r.clusterMu.Lock()
	defer r.clusterMu.Unlock()
	if r.cluster != "" {
		return r.cluster, nil
	}
	var ns corev1.Namespace
	if err := r.APIReader.Get(ctx, types.NamespacedName{Name: "kube-system"}, &ns); err != nil {
		return "", fmt.Errorf("read namespace kube-system (the cluster's identity on the PostgreSQL server): %w", err)
	}
	r.cluster = string(ns.UID)
	return r.cluster, nil
}

// tenantDBMark is the mark provisioning records for a live tenant (no
// orphan stamp: a database found again by its Tenant loses it).
func (r *TenantReconciler) tenantDBMark(ctx context.Context, t *platformv1.Tenant) (dbMark, error) {
	cluster, err := r.clusterID(ctx)
	if err != nil {
		return dbMark{}, err
	}
	return dbMark{Cluster: cluster, Tenant: t.Name, TenantUID: t.UID}, nil
}

// errDatabaseConflict: the tenant's database or role name is taken, on the
// server, by another Tenant's (its comment names another UID).
var errDatabaseConflict = errors.New("database conflict")
