package controllers

import (
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// QuietConflicts gives the envtest suite (package controllers_test) the
// wrapper every controller is built with.
func QuietConflicts(r reconcile.Reconciler) reconcile.Reconciler { return quietConflicts(r) }

// DistinctWarnings gives the envtest suite the recorder wrapper every
// controller records with.
func DistinctWarnings(r events.EventRecorder) events.EventRecorder { return distinctWarnings{r} }
