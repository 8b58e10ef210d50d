package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// The server scan: a PostgreSQL tenant whose namespace was deleted by hand
// and whose Tenant's finalizer was stripped leaves no mark in the cluster,
// so only the shared server still knows of its database. With the backend
// enabled, each sweep lists the server's databases that carry this
// cluster's Omniflow mark (their COMMENT) and erases those bound to a Tenant
// UID that no live Tenant and no present marked namespace has (a marked
// namespace is the namespace sweep's to erase, with every other step).
// There is no Kubernetes object to hang an Event on, so an orphaned database
// is reported by a log line and the metrics omniflow_orphans{kind="database"},
// omniflow_orphans_erased_total{kind="database"} and
// omniflow_orphan_erasure_failures_total{step="ScanDatabases"|"DeleteStorage"}.
// A database without the mark is never looked at.

// scannedDatabases is the result of the scan: the marked databases, or why
// the server could not be listed.
type scannedDatabases struct {
	dbs     []serverDatabase
	cluster string
	err     error
}

// scanDatabases lists the server's marked databases; nil when the
// PostgreSQL backend is not enabled. A failure is kept, not returned: the
// rest of the sweep goes on, and the failure is reported and retried.
func (s *OrphanSweeper) scanDatabases(ctx context.Context) *scannedDatabases {
	r := s.Eraser
	if !r.Postgres.enabled() {
		return nil
	}
	out := &scannedDatabases{}
	out.cluster, out.err = r.clusterID(ctx)
	if out.err != nil {
		return out
	}
	admin, err := r.postgresAdminDSN(ctx)
	if err != nil {
		out.err = err
		return out
	}
	conn, _, err := connectAdmin(ctx, admin)
	if err != nil {
		out.err = err
		return out
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	out.dbs, out.err = listMarkedDatabases(ctx, conn)
	return out
}

// orphanDatabases picks, from the marked databases, those of this cluster
// whose Tenant UID belongs to no live Tenant and to no listed namespace's
// ownership mark. ours counts the databases of this cluster.
func orphanDatabases(dbs []serverDatabase, cluster string, tenants liveTenants, nss []*metav1.PartialObjectMetadata) (orphans []serverDatabase, ours int) {
	marked := map[types.UID]bool{}
	for _, ns := range nss {
		if uid := ns.Annotations[AnnotationTenantUID]; uid != "" {
			marked[types.UID(uid)] = true
		}
	}
	for _, db := range dbs {
		if db.Mark.Cluster != cluster {
			continue // another installation's, on a shared server
		}
		ours++
		if _, live := tenants.byUID[db.Mark.TenantUID]; !live && !marked[db.Mark.TenantUID] {
			orphans = append(orphans, db)
		}
	}
	return orphans, ours
}

// sweepDatabases erases the orphaned databases whose grace period, counted
// from when a sweep first found them, has passed. busy reports an erasure
// still in progress or failing.
func (s *OrphanSweeper) sweepDatabases(ctx context.Context, scan *scannedDatabases, tenants liveTenants, nss []*metav1.PartialObjectMetadata) (bool, error) {
	log := logf.FromContext(ctx)
	if scan.err != nil {
		orphanStepFailures.WithLabelValues("ScanDatabases").Inc()
		log.Error(scan.err, "Cannot scan the PostgreSQL server for orphaned tenant databases; retrying")
		return true, fmt.Errorf("scan the PostgreSQL server for orphaned databases: %w", scan.err)
	}
	orphans, ours := orphanDatabases(scan.dbs, scan.cluster, tenants, nss)
	orphansFound.WithLabelValues("database").Set(float64(len(orphans)))
	if tooMany(len(orphans), ours, s.MaxOrphanShare) {
		sweepStoodDown.Set(1)
		log.Error(nil, "Too many tenant databases look orphaned at once: the orphan sweep leaves them alone; check the Tenant objects (a CRD reinstall or a restore?)",
			"orphaned", len(orphans), "tenantDatabases", ours, "maxShare", s.MaxOrphanShare)
		return false, nil
	}
	busy := false
	var errs []error
	for _, db := range orphans {
		b, err := s.sweepDatabase(ctx, db)
		busy = busy || b
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return busy, fmt.Errorf("orphaned databases: %w", errors.Join(errs...))
	}
	return busy, nil
}

// sweepDatabase stamps an orphaned database with the time it was found, and
// once its grace period has passed, drops it and its role with the store's
// own erasure step, verified on the server.
func (s *OrphanSweeper) sweepDatabase(ctx context.Context, db serverDatabase) (bool, error) {
	log := logf.FromContext(ctx).WithValues("database", db.Name, "tenant", db.Mark.Tenant, "tenantUID", db.Mark.TenantUID)
	foundAt, still, err := s.stampDatabase(ctx, db)
	if err != nil {
		orphanStepFailures.WithLabelValues("ScanDatabases").Inc()
		log.Error(err, "Cannot stamp an orphaned tenant database; retrying")
		return true, err
	}
	if !still || s.Clock.Now().Before(foundAt.Add(s.GracePeriod)) {
		return false, nil
	}
	tgt := &erasureTarget{
		tenantRef: tenantRef{Name: db.Mark.Tenant, UID: db.Mark.TenantUID},
		Backend:   platformv1.StoragePostgreSQL,
		Database:  db.Name,
	}
	verification, done, err := s.Eraser.dropPostgres(ctx, tgt)
	if err != nil {
		orphanStepFailures.WithLabelValues(string(stepDeleteStorage)).Inc()
		log.Error(err, "Orphan erasure step failed; retrying", "step", stepDeleteStorage)
		return true, fmt.Errorf("database %s: erasure step %s: %w", db.Name, stepDeleteStorage, err)
	}
	if !done {
		log.V(1).Info("Orphan erasure step in progress", "step", stepDeleteStorage, "verification", verification)
		return true, nil
	}
	orphansErased.WithLabelValues("database").Inc()
	log.Info("Orphaned tenant database erased", "step", stepDeleteStorage, "verification", verification)
	return false, nil
}

// stampDatabase records in the database's comment when the sweep first
// found it orphaned, and reports that time: the grace period survives
// operator restarts and leader changes. still is false when the database
// changed since the listing (gone, or bound anew): the next sweep looks
// again.
func (s *OrphanSweeper) stampDatabase(ctx context.Context, db serverDatabase) (foundAt time.Time, still bool, err error) {
	if db.Mark.OrphanedAt != nil {
		return *db.Mark.OrphanedAt, true, nil
	}
	now := s.Clock.Now().UTC().Truncate(time.Second)
	admin, err := s.Eraser.postgresAdminDSN(ctx)
	if err != nil {
		return now, false, err
	}
	conn, _, err := connectAdmin(ctx, admin)
	if err != nil {
		return now, false, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	have, err := lookupServerObject(ctx, conn, "database", db.Name)
	if err != nil || !have.Exists || have.boundTo() != db.Mark.TenantUID {
		return now, false, err
	}
	stamped := db.Mark
	stamped.OrphanedAt = &now
	if err := setComment(ctx, conn, "database", db.Name, have, stamped.String()); err != nil {
		return now, false, err
	}
	logf.FromContext(ctx).Info("Found orphaned tenant database", "database", db.Name, "tenant", db.Mark.Tenant,
		"tenantUID", db.Mark.TenantUID, "eraseAt", now.Add(s.GracePeriod).Format(time.RFC3339))
	return now, true, nil
}
