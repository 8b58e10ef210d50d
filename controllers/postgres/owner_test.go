package postgres_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/healthtable"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
)

// forceGrace is the grace period of tenants a test force-removes.
const forceGrace = 72 * time.Hour

// inDatabase runs statements as the server's admin inside one database.
func inDatabase(t *testing.T, g Gomega, db string, fn func(*pgx.Conn)) {
	t.Helper()
	conn, err := pgx.Connect(ctx, pgtest.WithDatabase(t, pgtest.ServerDSN(t), db))
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close(ctx)
	fn(conn)
}

// writeNote stores a row that says whose database this is.
func writeNote(t *testing.T, g Gomega, db, note string) {
	inDatabase(t, g, db, func(c *pgx.Conn) {
		_, err := c.Exec(ctx, "CREATE TABLE IF NOT EXISTS note (text text)")
		g.Expect(err).NotTo(HaveOccurred())
		_, err = c.Exec(ctx, "INSERT INTO note VALUES ($1)", note)
		g.Expect(err).NotTo(HaveOccurred())
	})
}

// notes reads the rows of writeNote; nil when the table does not exist.
func notes(t *testing.T, g Gomega, db string) []string {
	var out []string
	inDatabase(t, g, db, func(c *pgx.Conn) {
		var exists bool
		g.Expect(c.QueryRow(ctx, "SELECT to_regclass('note') IS NOT NULL").Scan(&exists)).To(Succeed())
		if !exists {
			return
		}
		rows, err := c.Query(ctx, "SELECT text FROM note ORDER BY text")
		g.Expect(err).NotTo(HaveOccurred())
		out, err = pgx.CollectRows(rows, pgx.RowTo[string])
		g.Expect(err).NotTo(HaveOccurred())
	})
	return out
}

// comment is the COMMENT of a database (catalog pg_database) or role
// (pg_authid); "" when it has none.
func comment(t *testing.T, g Gomega, catalog, name string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, pgtest.ServerDSN(t))
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close(ctx)
	view, column := "pg_database", "datname"
	if catalog == "pg_authid" {
		view, column = "pg_roles", "rolname"
	}
	var c *string
	g.Expect(conn.QueryRow(ctx, "SELECT shobj_description(oid, '"+catalog+"') FROM "+view+" WHERE "+column+" = $1", name).Scan(&c)).To(Succeed())
	if c == nil {
		return ""
	}
	return *c
}

func storageReady(g Gomega, name string) {
	c := cond(tenant(g, name), platformv1.ConditionStorageReady)
	g.Expect(c).NotTo(BeNil())
	g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
}

// eraseNow deactivates a Tenant with grace period 0 and waits until it is
// Erased.
func eraseNow(g Gomega, name string) {
	setState(g, name, platformv1.TenantDeactivated)
	clock.Step(time.Second)
	poke(g, name)
	g.Eventually(func(g Gomega) {
		g.Expect(tenant(g, name).Status.Phase).To(Equal(platformv1.TenantPhaseErased))
	}, 2*timeout, interval).Should(Succeed())
}

// provisioned creates a PostgreSQL Tenant and waits for its database; it
// returns the Tenant and the database's name. A tenant the test force-removes
// needs a grace period (forceGrace): forceRemove deletes before it strips the
// finalizer, and with none the Tenant's own erasure could win that race.
func provisioned(g Gomega, name string, grace time.Duration) (*platformv1.Tenant, string) {
	tn := newTenant(name, grace)
	g.Expect(k8s.Create(ctx, tn)).To(Succeed())
	g.Eventually(func(g Gomega) { storageReady(g, name) }, timeout, interval).Should(Succeed())
	return tn, controllers.PostgresDatabaseName(name, tn.UID)
}

// Issue 11: Tenant `a` force-removed and created again under another
// namespace gets a database of its own (never its predecessor's data); the
// sweep drops the old database with the old namespace after its grace
// period, and leaves the new one, and its data, alone.
func TestRecreatedPostgresTenantGetsItsOwnDatabaseAndTheOldOneIsSwept(t *testing.T) {
	g := NewWithT(t)
	startOperator(t, adminSecret)
	name := "pg-re-" + runID
	first, oldDB := provisioned(g, name, forceGrace)
	oldNS := first.NamespaceName()
	writeNote(t, g, oldDB, "first business")
	for _, catalog := range []string{"pg_database", "pg_authid"} {
		g.Expect(comment(t, g, catalog, oldDB)).To(And(HavePrefix("omniflow: "), ContainSubstring(" tenant-uid="+string(first.UID))),
			"the server records whose %s it is", catalog)
	}

	forceRemove(g, name)
	second := newTenant(name, forceGrace)
	second.Spec.Namespace = "pg-re-new-" + runID
	g.Expect(k8s.Create(ctx, second)).To(Succeed())
	newDB := controllers.PostgresDatabaseName(name, second.UID)
	g.Expect(newDB).NotTo(Equal(oldDB))
	g.Eventually(func(g Gomega) {
		storageReady(g, name)
		g.Expect(tenant(g, name).Status.Storage.DatabaseName).To(Equal(newDB))
	}, timeout, interval).Should(Succeed())
	g.Expect(comment(t, g, "pg_database", newDB)).To(ContainSubstring(" tenant-uid=" + string(second.UID)))
	g.Expect(notes(t, g, newDB)).To(BeEmpty(), "the new business sees nothing of the old one's")
	writeNote(t, g, newDB, "second business")
	var dep appsv1.Deployment
	g.Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: second.NamespaceName(), Name: controllers.WorkerName}, &dep)
	}, timeout, interval).Should(Succeed())
	g.Expect(string(postgresSecret(g, second.NamespaceName()).Data[platformv1.PostgresSecretKey])).To(ContainSubstring("/" + newDB))

	// The old namespace is an orphan; its database waits out the grace period.
	found := orphanFound(g, oldNS)
	graceHolds(t, g, found, oldDB)
	gracePasses(found)
	g.Eventually(func(g Gomega) {
		g.Expect(databaseExists(t, g, oldDB)).To(BeFalse())
		g.Expect(roleExists(t, g, oldDB)).To(BeFalse())
		g.Expect(apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Name: oldNS}, &corev1.Namespace{}))).To(BeTrue())
	}, 2*timeout, interval).Should(Succeed())
	g.Expect(databaseExists(t, g, newDB)).To(BeTrue())
	g.Expect(roleExists(t, g, newDB)).To(BeTrue())
	g.Expect(notes(t, g, newDB)).To(Equal([]string{"second business"}))
	g.Consistently(func(g Gomega) { storageReady(g, name) }, time.Second, interval).Should(Succeed())
}

// Issue 11: a tenant whose namespace was deleted by hand and whose
// finalizer was stripped leaves no mark in the cluster: the sweep finds its
// database on the server by the UID comment, stamps it there, and drops the
// database and its role once the grace period since then has passed.
func TestDatabaseWithoutNamespaceOrTenantIsDroppedByTheServerScan(t *testing.T) {
	g := NewWithT(t)
	startOperator(t, adminSecret)
	tn, db := provisioned(g, "pg-gone-"+runID, forceGrace)
	writeNote(t, g, db, "gone business")
	erasedBefore := counterValue(g, "omniflow_orphans_erased_total", "kind", "database")

	forceRemove(g, tn.Name)
	g.Expect(k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tn.NamespaceName()}})).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Name: tn.NamespaceName()}, &corev1.Namespace{}))
	}, timeout, interval).Should(BeTrue())

	found := orphanStamp(t, g, db)
	g.Expect(counterValue(g, "omniflow_orphans", "kind", "database")).To(BeNumerically(">=", 1))
	graceHolds(t, g, found, db)
	g.Expect(notes(t, g, db)).To(Equal([]string{"gone business"}))

	gracePasses(found)
	g.Eventually(func(g Gomega) {
		g.Expect(databaseExists(t, g, db)).To(BeFalse())
		g.Expect(roleExists(t, g, db)).To(BeFalse())
		g.Expect(counterValue(g, "omniflow_orphans_erased_total", "kind", "database")).To(BeNumerically(">", erasedBefore))
	}, 2*timeout, interval).Should(Succeed())
}

// A database of the tenant's name that the server records as another
// Tenant's (here: of another installation sharing the server) is neither
// adopted by provisioning, nor dropped by the tenant's erasure, nor by the
// server scan; its data stays as it was.
func TestDatabaseOfAnotherTenantIsNeitherAdoptedNorDropped(t *testing.T) {
	g := NewWithT(t)
	// The Tenant first, with no operator running: its UID names its database.
	tn := newTenant("pg-foreign-"+runID, 0)
	g.Expect(k8s.Create(ctx, tn)).To(Succeed())
	db := controllers.PostgresDatabaseName(tn.Name, tn.UID)
	dropOnServer(t, db)
	foreign := "omniflow: cluster=another-installation tenant=" + tn.Name + " tenant-uid=3f1c-foreign"
	inDatabase(t, g, "postgres", func(c *pgx.Conn) {
		_, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
		g.Expect(err).NotTo(HaveOccurred())
		_, err = c.Exec(ctx, "COMMENT ON DATABASE "+pgx.Identifier{db}.Sanitize()+" IS '"+foreign+"'")
		g.Expect(err).NotTo(HaveOccurred())
	})
	writeNote(t, g, db, "someone else's")

	startOperator(t, adminSecret)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		c := cond(got, platformv1.ConditionStorageReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(platformv1.ReasonDatabaseConflict))
		g.Expect(c.Message).To(And(ContainSubstring(db), ContainSubstring("bound to another Tenant")))
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseFailed))
		// A human must act: GitOps tools read it as Failed, not as in progress.
		g.Expect(healthtable.KeyOf(got)).To(ContainSubstring("/" + platformv1.ReasonDatabaseConflict + "/"))
		g.Expect(healthtable.Check(got)).To(Succeed())
	}, timeout, interval).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(roleExists(t, g, db)).To(BeFalse(), "no role is made that could log into it")
		g.Expect(comment(t, g, "pg_database", db)).To(Equal(foreign))
		err := k8s.Get(ctx, types.NamespacedName{Namespace: tn.NamespaceName(), Name: controllers.WorkerName}, &appsv1.Deployment{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no worker serves a database that is not the tenant's")
	}, 2*time.Second, interval).Should(Succeed())

	// The tenant's erasure leaves it, and says so.
	eraseNow(g, tn.Name)
	got := tenant(g, tn.Name)
	i := slices.IndexFunc(got.Status.Erasure, func(s platformv1.ErasureStep) bool { return s.Name == "DeleteStorage" })
	g.Expect(i).To(BeNumerically(">=", 0))
	g.Expect(got.Status.Erasure[i].Verification).To(And(
		ContainSubstring("database "+db+" exists and is not the tenant's; left alone"),
		ContainSubstring("3f1c-foreign"),
		ContainSubstring("role "+db+" not found")))
	g.Expect(got.Status.Erasure[i].Verification).NotTo(ContainSubstring("database " + db + " not found"))

	// Nor does the server scan take it for an orphan, past any grace period.
	clock.Step(orphanGrace + time.Hour)
	g.Consistently(func(g Gomega) {
		g.Expect(databaseExists(t, g, db)).To(BeTrue())
		g.Expect(comment(t, g, "pg_database", db)).To(Equal(foreign))
	}, 3*time.Second, interval).Should(Succeed())
	g.Expect(notes(t, g, db)).To(Equal([]string{"someone else's"}))
}

// orphanStamp waits for the server scan to stamp db's comment and returns
// when it was found.
func orphanStamp(t *testing.T, g Gomega, db string) time.Time {
	t.Helper()
	var found time.Time
	g.Eventually(func(g Gomega) {
		c := comment(t, g, "pg_database", db)
		_, stamp, ok := strings.Cut(c, " orphaned-at=")
		g.Expect(ok).To(BeTrue(), "comment %q", c)
		var err error
		found, err = time.Parse(time.RFC3339, stamp)
		g.Expect(err).NotTo(HaveOccurred())
	}, timeout, interval).Should(Succeed())
	return found
}

// Tenant `a` force-removed and created again under the same namespace takes
// the namespace over, but not the database: it gets its own, and its
// credentials Secret a new password (the old one still logs into the old
// role until that goes); the old database, which no mark names any more, is
// found by the server scan and dropped after the grace period.
func TestRecreatedInTheSameNamespaceTheOldDatabaseIsNotTakenOver(t *testing.T) {
	g := NewWithT(t)
	startOperator(t, adminSecret)
	name := "pg-same-" + runID
	first, oldDB := provisioned(g, name, forceGrace)
	ns := first.NamespaceName()
	writeNote(t, g, oldDB, "first business")
	oldDSN := string(postgresSecret(g, ns).Data[platformv1.PostgresSecretKey])

	forceRemove(g, name)
	second := newTenant(name, forceGrace)
	g.Expect(k8s.Create(ctx, second)).To(Succeed())
	newDB := controllers.PostgresDatabaseName(name, second.UID)
	g.Eventually(func(g Gomega) {
		storageReady(g, name)
		g.Expect(tenant(g, name).Status.Storage.DatabaseName).To(Equal(newDB))
		s := postgresSecret(g, ns)
		g.Expect(s.OwnerReferences).To(ContainElement(HaveField("UID", second.UID)))
		cfg, err := pgconn.ParseConfig(string(s.Data[platformv1.PostgresSecretKey]))
		g.Expect(err).NotTo(HaveOccurred())
		old, err := pgconn.ParseConfig(oldDSN)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(cfg.Database).To(Equal(newDB))
		g.Expect(cfg.Password).NotTo(Equal(old.Password), "the predecessor's password is not handed on")
	}, timeout, interval).Should(Succeed())
	g.Expect(notes(t, g, newDB)).To(BeEmpty())

	found := orphanStamp(t, g, oldDB)
	graceHolds(t, g, found, oldDB)
	gracePasses(found)
	g.Eventually(func(g Gomega) {
		g.Expect(databaseExists(t, g, oldDB)).To(BeFalse())
		g.Expect(roleExists(t, g, oldDB)).To(BeFalse())
	}, 2*timeout, interval).Should(Succeed())
	g.Expect(databaseExists(t, g, newDB)).To(BeTrue())
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{})).To(Succeed(), "the namespace is the new tenant's")
	storageReady(g, name)
}

// The tenant's own role owns its database and may rewrite the database's
// comment; the binding that counts is its role's, which it cannot change:
// a worker that makes its database look like another Tenant's does not
// escape its erasure.
func TestTenantCannotEscapeErasureByRewritingItsDatabaseComment(t *testing.T) {
	g := NewWithT(t)
	startOperator(t, adminSecret)
	tn, db := provisioned(g, "pg-forge-"+runID, 0)
	conn, err := pgx.Connect(ctx, string(postgresSecret(g, tn.NamespaceName()).Data[platformv1.PostgresSecretKey]))
	g.Expect(err).NotTo(HaveOccurred())
	_, err = conn.Exec(ctx, "COMMENT ON DATABASE "+pgx.Identifier{db}.Sanitize()+" IS 'omniflow: cluster=elsewhere tenant=x tenant-uid=someone-else'")
	g.Expect(err).NotTo(HaveOccurred(), "the owner may comment on its database")
	_, err = conn.Exec(ctx, "COMMENT ON ROLE "+pgx.Identifier{db}.Sanitize()+" IS 'omniflow: cluster=elsewhere tenant=x tenant-uid=someone-else'")
	g.Expect(err).To(HaveOccurred(), "but not on its own role")
	g.Expect(conn.Close(ctx)).To(Succeed())

	eraseNow(g, tn.Name)
	g.Expect(databaseExists(t, g, db)).To(BeFalse())
	g.Expect(roleExists(t, g, db)).To(BeFalse())
}
