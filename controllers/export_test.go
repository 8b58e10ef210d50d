package controllers

import "sigs.k8s.io/controller-runtime/pkg/reconcile"

// QuietConflicts gives the envtest suite (package controllers_test) the
// wrapper every controller is built with.
func QuietConflicts(r reconcile.Reconciler) reconcile.Reconciler { return quietConflicts(r) }
