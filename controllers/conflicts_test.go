package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// The wrapper every controller is built with: a conflict, however wrapped,
// is a quiet requeue logged at V(1); anything else, also a conflict joined
// with another error, reaches controller-runtime unchanged.
func TestQuietConflicts(t *testing.T) {
	t.Parallel()
	conflict := apierrors.NewConflict(schema.GroupResource{Group: "platform.omniflowcrm.com", Resource: "tenants"}, "acme",
		errors.New("the object has been modified"))
	other := errors.New("connection refused")
	later := reconcile.Result{RequeueAfter: time.Hour}
	tests := []struct {
		name      string
		res       reconcile.Result
		err       error
		wantRes   reconcile.Result
		wantErr   error
		wantQuiet bool
	}{
		{"success passes through", later, nil, later, nil, false},
		{"a conflict is a requeue", reconcile.Result{}, conflict, reconcile.Result{RequeueAfter: ConflictRequeue}, nil, true},
		{"a wrapped conflict too", reconcile.Result{}, fmt.Errorf("patch tenant status: %w", conflict), reconcile.Result{RequeueAfter: ConflictRequeue}, nil, true},
		{"a conflict joined to nil (the deferred status patch)", reconcile.Result{}, errors.Join(nil, fmt.Errorf("patch: %w", conflict)),
			reconcile.Result{RequeueAfter: ConflictRequeue}, nil, true},
		{"two conflicts", reconcile.Result{}, errors.Join(conflict, conflict), reconcile.Result{RequeueAfter: ConflictRequeue}, nil, true},
		{"another error surfaces", later, other, later, other, false},
		{"a conflict does not hide another error", reconcile.Result{}, errors.Join(other, conflict), reconcile.Result{}, other, false},
		{"nor when wrapped once more", reconcile.Result{}, fmt.Errorf("phase: %w", errors.Join(conflict, other)), reconcile.Result{}, other, false},
		{"a not-found is no conflict", reconcile.Result{}, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, "x"), reconcile.Result{}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs []string
			ctx := logf.IntoContext(context.Background(), funcr.New(func(prefix, args string) {
				logs = append(logs, args)
			}, funcr.Options{Verbosity: 1}))
			inner := reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) { return tc.res, tc.err })
			res, err := quietConflicts(inner).Reconcile(ctx, reconcile.Request{})
			if res != tc.wantRes {
				t.Errorf("result = %+v, want %+v", res, tc.wantRes)
			}
			switch {
			case tc.wantQuiet && err != nil:
				t.Errorf("error = %v, want none", err)
			case !tc.wantQuiet && tc.err != nil && !errors.Is(err, tc.err):
				t.Errorf("error = %v, want the reconciler's own %v", err, tc.err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("error = %v, want %v", err, tc.wantErr)
			}
			quiet := len(logs) == 1 && strings.Contains(logs[0], `"level"=1`) && strings.Contains(logs[0], "Optimistic-lock conflict")
			if quiet != tc.wantQuiet {
				t.Errorf("logs %q: a V(1) conflict line = %v, want %v", logs, quiet, tc.wantQuiet)
			}
		})
	}
}

// A sweep pass that met only write conflicts or an expired continue token
// (the API server compacted the snapshot of a long paged listing) is run
// again quietly; anything else is an error log, also when joined with them.
func TestSweepFailureLogs(t *testing.T) {
	t.Parallel()
	conflict := apierrors.NewConflict(schema.GroupResource{Resource: "namespaces"}, "tenant-acme", errors.New("the object has been modified"))
	// What kube-apiserver answers to a continue token older than its last
	// compaction: 410 Gone, reason Expired.
	expired := apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result.")
	refused := errors.New("erase database: connection refused")
	tests := []struct {
		name      string
		err       error
		wantLines int
		wantQuiet bool
	}{
		{"a pass that succeeded logs nothing", nil, 0, false},
		{"a conflict is quiet", fmt.Errorf("mark orphan: %w", conflict), 1, true},
		{"an expired listing is quiet", fmt.Errorf("list namespaces: %w", expired), 1, true},
		{"both at once are quiet", errors.Join(conflict, fmt.Errorf("list volumes: %w", expired)), 1, true},
		{"another failure is an error", refused, 1, false},
		{"a conflict does not hide it", errors.Join(conflict, refused), 1, false},
		{"nor an expired listing, wrapped once more", fmt.Errorf("sweep: %w", errors.Join(refused, expired)), 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs []string
			logSweepFailure(funcr.New(func(prefix, args string) { logs = append(logs, args) }, funcr.Options{Verbosity: 1}), tc.err)
			if len(logs) != tc.wantLines {
				t.Fatalf("logs %q: want %d line(s)", logs, tc.wantLines)
			}
			if tc.wantLines == 0 {
				return
			}
			quiet := strings.Contains(logs[0], `"level"=1`) && strings.Contains(logs[0], "sweeping again")
			loud := strings.Contains(logs[0], "Orphan sweep failed") && strings.Contains(logs[0], `"error"=`)
			if quiet != tc.wantQuiet || loud == tc.wantQuiet {
				t.Errorf("log %q: quiet = %v, error = %v; want quiet = %v", logs[0], quiet, loud, tc.wantQuiet)
			}
		})
	}
}
