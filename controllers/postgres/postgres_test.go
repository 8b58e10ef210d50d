package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	imeta "github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres"
	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

const (
	timeout  = 60 * time.Second
	interval = 200 * time.Millisecond
)

var ctx = context.Background()

// runID keeps the roles and databases of this run apart from those of another run on
// the same server (two `make test` at once share hack/setup-postgres.sh's server).
var runID = func() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

func newTenant(name string, grace time.Duration) *platformv1.Tenant {
	return &platformv1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: platformv1.TenantSpec{
			Storage: platformv1.TenantStorage{Backend: platformv1.StoragePostgreSQL},
			Worker:  platformv1.WorkerSpec{Replicas: ptr.To(int32(2))},
			Erasure: platformv1.ErasurePolicy{GracePeriod: &metav1.Duration{Duration: grace}},
		},
	}
}

func tenant(g Gomega, name string) *platformv1.Tenant {
	var tn platformv1.Tenant
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: name}, &tn)).To(Succeed())
	return &tn
}

// poke asks for a reconcile: the fake clock moves, but nothing in the API
// server does.
func poke(g Gomega, name string) {
	tn := tenant(g, name)
	patch := client.MergeFrom(tn.DeepCopy())
	if tn.Annotations == nil {
		tn.Annotations = map[string]string{}
	}
	tn.Annotations[controllers.ReconcileAnnotation] = time.Now().Format(time.RFC3339Nano)
	g.Expect(k8s.Patch(ctx, tn, patch)).To(Succeed())
}

func setState(g Gomega, name string, state platformv1.TenantState) {
	tn := tenant(g, name)
	patch := client.MergeFrom(tn.DeepCopy())
	tn.Spec.State = state
	g.Expect(k8s.Patch(ctx, tn, patch)).To(Succeed())
}

func cond(tn *platformv1.Tenant, typ string) *metav1.Condition {
	return meta.FindStatusCondition(tn.Status.Conditions, typ)
}

func stepNames(tn *platformv1.Tenant) []string {
	var out []string
	for _, s := range tn.Status.Erasure {
		if s.CompletedAt != nil {
			out = append(out, s.Name)
		}
	}
	return out
}

// onServer runs a query on the test server as its admin.
func onServer(t *testing.T, g Gomega, query string, args ...any) bool {
	t.Helper()
	conn, err := pgx.Connect(ctx, pgtest.ServerDSN(t))
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close(ctx)
	var v bool
	g.Expect(conn.QueryRow(ctx, query, args...).Scan(&v)).To(Succeed())
	return v
}

// dropOnServer drops databases and roles a test made by hand, when it ends.
func dropOnServer(t *testing.T, names ...string) {
	t.Helper()
	dsn := pgtest.ServerDSN(t)
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("clean up: %v", err)
			return
		}
		defer conn.Close(ctx)
		for _, n := range names {
			ident := pgx.Identifier{n}.Sanitize()
			for _, stmt := range []string{"DROP DATABASE IF EXISTS " + ident + " WITH (FORCE)", "DROP ROLE IF EXISTS " + ident} {
				if _, err := conn.Exec(ctx, stmt); err != nil {
					t.Errorf("clean up: %v", err)
				}
			}
		}
	})
}

func roleExists(t *testing.T, g Gomega, name string) bool {
	return onServer(t, g, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name)
}

func databaseExists(t *testing.T, g Gomega, name string) bool {
	return onServer(t, g, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name)
}

// texts is everything a human or a log collector sees of a tenant: its
// status and the Events about it. No password may appear in it.
func texts(g Gomega, tn *platformv1.Tenant) string {
	raw, err := json.Marshal(tn.Status)
	g.Expect(err).NotTo(HaveOccurred())
	var evs eventsv1.EventList
	g.Expect(k8s.List(ctx, &evs)).To(Succeed())
	out := string(raw)
	for _, e := range evs.Items {
		if e.Regarding.Name == tn.Name || e.Regarding.Namespace == tn.NamespaceName() {
			out += "\n" + e.Note
		}
	}
	return out
}

func postgresSecret(g Gomega, ns string) *corev1.Secret {
	var s corev1.Secret
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: platformv1.PostgresSecretName}, &s)).To(Succeed())
	return &s
}

func TestPostgresTenantIsProvisionedServedAndErased(t *testing.T) {
	g := NewWithT(t)
	startOperator(t, adminSecret)
	tn := newTenant("pg-acme-"+runID, 72*time.Hour)
	g.Expect(k8s.Create(ctx, tn)).To(Succeed())
	ns, db := tn.NamespaceName(), controllers.PostgresDatabaseName(tn.Name, tn.UID)
	g.Expect(db).To(MatchRegexp("^omniflow_pg_acme_" + runID + "_[0-9a-f]{8}$"))

	// The Secret, the role and the database.
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		c := cond(got, platformv1.ConditionStorageReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		g.Expect(c.Reason).To(Equal(platformv1.ReasonDatabaseReady))
		g.Expect(c.Message).To(And(ContainSubstring(db), ContainSubstring("127.0.0.1:55432")))
		g.Expect(got.Status.Storage).To(Equal(&platformv1.StorageStatus{Backend: platformv1.StoragePostgreSQL, DatabaseName: db}))
	}, timeout, interval).Should(Succeed())
	secret := postgresSecret(g, ns)
	g.Expect(secret.Labels).To(HaveKeyWithValue(platformv1.LabelTenant, tn.Name))
	g.Expect(secret.Labels).To(HaveKeyWithValue(platformv1.LabelManagedBy, platformv1.ManagedByValue))
	g.Expect(secret.OwnerReferences).To(ContainElement(HaveField("Name", tn.Name)))
	dsn := string(secret.Data[platformv1.PostgresSecretKey])
	cfg, err := pgconn.ParseConfig(dsn)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.User).To(Equal(db))
	g.Expect(cfg.Database).To(Equal(db))
	g.Expect(cfg.Password).To(MatchRegexp("^[0-9a-f]{64}$"), "32 random bytes, hex")

	g.Expect(roleExists(t, g, db)).To(BeTrue())
	g.Expect(databaseExists(t, g, db)).To(BeTrue())
	g.Expect(onServer(t, g, "SELECT rolcanlogin AND rolpassword IS NOT NULL FROM pg_authid WHERE rolname = $1", db)).To(BeTrue(),
		"the role logs in with a password")
	g.Expect(onServer(t, g, "SELECT rolpassword LIKE 'SCRAM-SHA-256$4096:%' FROM pg_authid WHERE rolname = $1", db)).To(BeTrue(),
		"the server holds a SCRAM verifier, sent as such: the password never crosses in a statement")
	g.Expect(onServer(t, g, "SELECT pg_get_userbyid(datdba) = $1 FROM pg_database WHERE datname = $1", db)).To(BeTrue(),
		"the tenant's role owns its database")
	g.Expect(onServer(t, g, `SELECT NOT EXISTS (SELECT 1 FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
		WHERE d.datname = $1 AND a.grantee = 0 AND a.privilege_type = 'CONNECT')`, db)).To(BeTrue(),
		"PUBLIC may not connect to a tenant's database")

	// The DSN in the Secret connects as the tenant's role, and the worker's
	// store opens (creating its schema) and commits a delivery on it.
	conn, err := pgx.Connect(ctx, dsn)
	g.Expect(err).NotTo(HaveOccurred())
	var user string
	g.Expect(conn.QueryRow(ctx, "SELECT current_user").Scan(&user)).To(Succeed())
	g.Expect(user).To(Equal(db))
	g.Expect(conn.Close(ctx)).To(Succeed())
	st, err := postgres.Open(ctx, dsn, postgres.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	res, err := st.Commit(ctx, &imeta.Batch{Messages: []imeta.Message{{
		Platform: imeta.WhatsApp, Channel: "acme", ID: "wamid.1", Subject: "u1", Direction: imeta.Inbound, Type: "text",
		Text: "hello", Timestamp: clock.Now(), Raw: json.RawMessage(`{"id":"wamid.1"}`),
	}}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.MessagesNew).To(Equal(1))
	g.Expect(st.Close()).To(Succeed())

	// The worker: the DSN from the Secret, --store=postgres, no volume.
	var dep appsv1.Deployment
	g.Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &dep)
	}, timeout, interval).Should(Succeed())
	pod := dep.Spec.Template.Spec
	g.Expect(pod.Containers[0].Args).To(ContainElement("--store=postgres"))
	g.Expect(pod.Containers[0].Args).NotTo(ContainElement(HavePrefix("--data-dir")))
	g.Expect(pod.Containers[0].Env).To(ContainElement(corev1.EnvVar{Name: "OMNIFLOW_POSTGRES_DSN", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: platformv1.PostgresSecretName}, Key: "dsn"},
	}}))
	g.Expect(pod.Volumes).To(BeEmpty())
	g.Expect(pod.Containers[0].VolumeMounts).To(BeEmpty())
	g.Expect(ptr.Deref(dep.Spec.Replicas, 0)).To(Equal(int32(2)))
	var claims corev1.PersistentVolumeClaimList
	g.Expect(k8s.List(ctx, &claims, client.InNamespace(ns))).To(Succeed())
	g.Expect(claims.Items).To(BeEmpty(), "a PostgreSQL tenant has no data claim")

	// Another pass keeps the password: it was generated once. And it writes
	// nothing on the server: the role's and the database's catalog rows are
	// the same row versions (xmin) after it. The pass is made visible by a
	// harmless edit of the Secret's DSN that it puts back.
	rows := func(g Gomega) string {
		conn, err := pgx.Connect(ctx, pgtest.ServerDSN(t))
		g.Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		var role, database string
		g.Expect(conn.QueryRow(ctx, "SELECT xmin::text FROM pg_authid WHERE rolname = $1", db).Scan(&role)).To(Succeed())
		g.Expect(conn.QueryRow(ctx, "SELECT xmin::text FROM pg_database WHERE datname = $1", db).Scan(&database)).To(Succeed())
		return "pg_authid " + role + ", pg_database " + database
	}
	steady := rows(g)
	edited := secret.DeepCopy()
	edited.Data[platformv1.PostgresSecretKey] = []byte(dsn + "&application_name=edited")
	g.Expect(k8s.Update(ctx, edited)).To(Succeed())
	poke(g, tn.Name)
	g.Eventually(func(g Gomega) string { return string(postgresSecret(g, ns).Data[platformv1.PostgresSecretKey]) }, timeout, interval).
		Should(Equal(dsn), "a pass ran")
	g.Consistently(func(g Gomega) {
		g.Expect(string(postgresSecret(g, ns).Data[platformv1.PostgresSecretKey])).To(Equal(dsn))
		g.Expect(cond(tenant(g, tn.Name), platformv1.ConditionStorageReady).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(rows(g)).To(Equal(steady), "no ALTER ROLE, no REVOKE at steady state")
	}, 2*time.Second, interval).Should(Succeed())
	secret = postgresSecret(g, ns)
	g.Expect(texts(g, tenant(g, tn.Name))).NotTo(ContainSubstring(cfg.Password))

	// A Secret deleted by hand comes back with a new password, and the role
	// follows it: the Secret is the truth.
	verifier := func(g Gomega) string {
		conn, err := pgx.Connect(ctx, pgtest.ServerDSN(t))
		g.Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		var v string
		g.Expect(conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", db).Scan(&v)).To(Succeed())
		return v
	}
	before := verifier(g)
	g.Expect(k8s.Delete(ctx, secret)).To(Succeed())
	g.Eventually(func(g Gomega) {
		s := postgresSecret(g, ns)
		g.Expect(string(s.Data[platformv1.PostgresSecretKey])).NotTo(Equal(dsn))
		g.Expect(verifier(g)).NotTo(Equal(before))
	}, timeout, interval).Should(Succeed())

	// The worker's shared-files report: its files are in the database.
	reportedAt := metav1.NewTime(clock.Now().UTC().Truncate(time.Second))
	g.Expect(testenv.ReportMedia(ctx, k8s, ns, workerreport.Media{ReportedAt: reportedAt, Fetched: 2, Blobs: 2, Bytes: 2048})).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(tenant(g, tn.Name).Status.Files).To(HaveField("StoredBytes", int64(2048)))
	}, timeout, interval).Should(Succeed())

	// Deactivation, then the scheduled time: the database and the role go.
	deactivatedAt := clock.Now().UTC().Truncate(time.Second)
	setState(g, tn.Name, platformv1.TenantDeactivated)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseDeactivated))
		g.Expect(stepNames(got)).To(Equal([]string{"StopIngest"}))
	}, timeout, interval).Should(Succeed())
	g.Expect(databaseExists(t, g, db)).To(BeTrue(), "nothing is dropped during the grace period")

	clock.SetTime(deactivatedAt.Add(72*time.Hour + time.Second))
	poke(g, tn.Name)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseErased))
		g.Expect(stepNames(got)).To(Equal([]string{"StopIngest", "DestroyKey", "DeleteWorker", "DeleteStorage", "DeleteNamespace"}))
	}, 2*timeout, interval).Should(Succeed())
	g.Expect(databaseExists(t, g, db)).To(BeFalse())
	g.Expect(roleExists(t, g, db)).To(BeFalse())
	got := tenant(g, tn.Name)
	i := slices.IndexFunc(got.Status.Erasure, func(s platformv1.ErasureStep) bool { return s.Name == "DeleteStorage" })
	g.Expect(got.Status.Erasure[i].Verification).To(And(ContainSubstring(db), ContainSubstring("pg_database"), ContainSubstring("pg_roles")))
	g.Expect(got.Status.Erasure[i].Files).To(HaveValue(Equal(int64(2))), "the files that went with the database, as last reported")
	g.Expect(got.Status.Erasure[i].FileBytes).To(HaveValue(Equal(int64(2048))))
	g.Expect(texts(g, got)).NotTo(ContainSubstring(cfg.Password))
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{})).NotTo(Succeed(), "the Secret went with the namespace")
}

// An unreachable server is an outage: provisioning waits and retries, and
// erasure waits too, never skipping the database, until the server is back.
func TestUnreachableServerIsWaitedForNeverSkipped(t *testing.T) {
	g := NewWithT(t)
	stop := startOperator(t, downSecret)
	tn := newTenant("pg-down-"+runID, 0)
	g.Expect(k8s.Create(ctx, tn)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		c := cond(got, platformv1.ConditionStorageReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(platformv1.ReasonDatabaseUnavailable))
		g.Expect(c.Message).To(ContainSubstring("127.0.0.1:1"))
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseProvisioning), "an outage is not a failed spec")
	}, timeout, interval).Should(Succeed())
	// The password is stored before any role could carry it.
	g.Expect(postgresSecret(g, tn.NamespaceName()).Data).To(HaveKey(platformv1.PostgresSecretKey))

	setState(g, tn.Name, platformv1.TenantDeactivated)
	clock.Step(time.Second)
	poke(g, tn.Name)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(stepNames(got)).To(Equal([]string{"StopIngest", "DestroyKey", "DeleteWorker"}))
		c := cond(got, platformv1.ConditionErasing)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Message).To(And(ContainSubstring("DeleteStorage"), ContainSubstring("127.0.0.1:1")))
	}, timeout, interval).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(tenant(g, tn.Name).Status.Phase).To(Equal(platformv1.TenantPhaseErasing))
	}, 2*time.Second, interval).Should(Succeed())

	// The server is back (the operator now names a reachable one): the
	// erasure completes, verified on the server.
	stop()
	startOperator(t, adminSecret)
	poke(g, tn.Name)
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseErased))
		g.Expect(stepNames(got)).To(Equal([]string{"StopIngest", "DestroyKey", "DeleteWorker", "DeleteStorage", "DeleteNamespace"}))
	}, 2*timeout, interval).Should(Succeed())
	db := controllers.PostgresDatabaseName(tn.Name, tn.UID)
	g.Expect(databaseExists(t, g, db)).To(BeFalse())
	g.Expect(roleExists(t, g, db)).To(BeFalse())
}

func TestWithoutTheFlagPostgreSQLIsUnsupported(t *testing.T) {
	g := NewWithT(t)
	startOperator(t, types.NamespacedName{})
	tn := newTenant("pg-noflag-"+runID, 0)
	g.Expect(k8s.Create(ctx, tn)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := tenant(g, tn.Name)
		c := cond(got, platformv1.ConditionStorageReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(platformv1.ReasonStorageUnsupported))
		g.Expect(c.Message).To(ContainSubstring("--postgres-admin-secret"))
		g.Expect(got.Status.Phase).To(Equal(platformv1.TenantPhaseFailed))
	}, timeout, interval).Should(Succeed())
	ns := tn.NamespaceName()
	g.Consistently(func(g Gomega) {
		var s corev1.Secret
		err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: platformv1.PostgresSecretName}, &s)
		g.Expect(err).To(HaveOccurred(), "nothing is provisioned")
		err = k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &appsv1.Deployment{})
		g.Expect(err).To(HaveOccurred(), "no worker without storage")
	}, 2*time.Second, interval).Should(Succeed())
}

// forceRemove deletes a Tenant the way an impatient admin would: the
// finalizer is stripped, so its own erasure never runs.
func forceRemove(g Gomega, name string) {
	// Delete first, then strip the finalizer: stripped first, the operator
	// may put it back (it guards every live Tenant) before the delete lands.
	tn := tenant(g, name)
	g.Expect(k8s.Delete(ctx, tn)).To(Succeed())
	g.Eventually(func() error {
		tn := tenant(g, name)
		patch := client.MergeFromWithOptions(tn.DeepCopy(), client.MergeFromWithOptimisticLock{})
		tn.Finalizers = nil
		return k8s.Patch(ctx, tn, patch)
	}, timeout, interval).Should(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Name: name}, &platformv1.Tenant{}))
	}, timeout, interval).Should(BeTrue())
}

// orphanFound waits for the sweep to stamp a namespace and returns when.
func orphanFound(g Gomega, ns string) time.Time {
	var at time.Time
	g.Eventually(func(g Gomega) {
		var got corev1.Namespace
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: ns}, &got)).To(Succeed())
		v := got.Annotations[controllers.AnnotationOrphanedAt]
		g.Expect(v).NotTo(BeEmpty())
		var err error
		at, err = time.Parse(time.RFC3339, v)
		g.Expect(err).NotTo(HaveOccurred())
	}, timeout, interval).Should(Succeed())
	return at
}

// graceHolds moves the clock to a second before the orphan grace period,
// counted from found, ends, and checks that db stays meanwhile.
func graceHolds(t *testing.T, g Gomega, found time.Time, db string) {
	t.Helper()
	clock.SetTime(found.Add(orphanGrace - time.Second))
	g.Consistently(func(g Gomega) {
		g.Expect(databaseExists(t, g, db)).To(BeTrue(), "nothing is dropped during the grace period")
	}, 2*time.Second, interval).Should(Succeed())
}

// gracePasses moves the clock a second past the grace period.
func gracePasses(found time.Time) { clock.SetTime(found.Add(orphanGrace + time.Second)) }

// sweepEvents lists "Type Reason: note" of the Events about a namespace.
func sweepEvents(g Gomega, ns string) []string {
	var evs corev1.EventList // the core view of events.k8s.io Events
	g.Expect(k8s.List(ctx, &evs, client.InNamespace("default"))).To(Succeed())
	var out []string
	for _, e := range evs.Items {
		if e.InvolvedObject.Kind == "Namespace" && e.InvolvedObject.Name == ns {
			out = append(out, e.Type+" "+e.Reason+": "+e.Message)
		}
	}
	return out
}

// Issue 11: a PostgreSQL tenant whose finalizer was force-removed is erased
// by the sweep, from the marks on its namespace: database and role dropped,
// checked on the server, and recorded.
func TestOrphanedPostgresTenantIsDroppedByTheSweep(t *testing.T) {
	g := NewWithT(t)
	startOperator(t, adminSecret)
	tn := newTenant("pg-orphan-"+runID, 24*time.Hour)
	g.Expect(k8s.Create(ctx, tn)).To(Succeed())
	db := controllers.PostgresDatabaseName(tn.Name, tn.UID)
	ns := tn.NamespaceName()
	g.Eventually(func(g Gomega) {
		c := cond(tenant(g, tn.Name), platformv1.ConditionStorageReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())
	g.Expect(databaseExists(t, g, db)).To(BeTrue())
	var marked corev1.Namespace
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: ns}, &marked)).To(Succeed())
	g.Expect(marked.Annotations).To(HaveKeyWithValue(controllers.AnnotationStorageBackend, "PostgreSQL"))
	g.Expect(marked.Annotations).To(HaveKeyWithValue(controllers.AnnotationPostgresDatabase, db))

	forceRemove(g, tn.Name)
	found := orphanFound(g, ns)
	graceHolds(t, g, found, db)

	gracePasses(found)
	g.Eventually(func(g Gomega) {
		g.Expect(databaseExists(t, g, db)).To(BeFalse())
		g.Expect(roleExists(t, g, db)).To(BeFalse())
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{})).NotTo(Succeed())
	}, 2*timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) {
		notes := sweepEvents(g, ns)
		g.Expect(notes).To(ContainElement(And(HavePrefix("Normal ErasureStep: DeleteStorage"),
			ContainSubstring("pg_database and pg_roles have no row named "+db))))
		g.Expect(notes).To(ContainElement(HavePrefix("Normal Erased: orphaned Namespace/" + ns)))
	}, timeout, interval).Should(Succeed())
}

// Issue 11: a sweep that cannot reach the server says so (Event, metric) and
// retries; it never reports the orphan erased, and finishes once the server
// can be reached.
func TestSweepThatCannotReachTheServerReportsAndRetries(t *testing.T) {
	g := NewWithT(t)
	stop := startOperator(t, downSecret)
	tn := newTenant("pg-orphan-down-"+runID, 0)
	g.Expect(k8s.Create(ctx, tn)).To(Succeed())
	db := controllers.PostgresDatabaseName(tn.Name, tn.UID)
	ns := tn.NamespaceName()
	g.Eventually(func(g Gomega) {
		var got corev1.Namespace
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: ns}, &got)).To(Succeed())
		g.Expect(got.Annotations).To(HaveKeyWithValue(controllers.AnnotationPostgresDatabase, db))
	}, timeout, interval).Should(Succeed())
	failuresBefore := counterValue(g, "omniflow_orphan_erasure_failures_total", "step", "DeleteStorage")

	forceRemove(g, tn.Name)
	found := orphanFound(g, ns)
	gracePasses(found)
	g.Eventually(func(g Gomega) {
		g.Expect(sweepEvents(g, ns)).To(ContainElement(And(HavePrefix("Warning ErasureStepFailed: erasure step DeleteStorage failed and will be retried"),
			ContainSubstring("127.0.0.1:1"))))
		g.Expect(counterValue(g, "omniflow_orphan_erasure_failures_total", "step", "DeleteStorage")).To(BeNumerically(">", failuresBefore))
	}, timeout, interval).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{})).To(Succeed(), "the namespace waits for its database")
		g.Expect(sweepEvents(g, ns)).NotTo(ContainElement(HavePrefix("Normal Erased")))
	}, 2*time.Second, interval).Should(Succeed())

	stop()
	startOperator(t, adminSecret)
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{})).NotTo(Succeed())
		g.Expect(sweepEvents(g, ns)).To(ContainElement(And(HavePrefix("Normal ErasureStep: DeleteStorage"), ContainSubstring(db))))
	}, 2*timeout, interval).Should(Succeed())
	g.Expect(databaseExists(t, g, db)).To(BeFalse())
	g.Expect(roleExists(t, g, db)).To(BeFalse())
}

// counterValue reads a counter or gauge from the operator's registry; 0
// when absent.
func counterValue(g Gomega, name, label, value string) float64 {
	v, _, err := testenv.MetricValue(name, label, value)
	g.Expect(err).NotTo(HaveOccurred())
	return v
}
