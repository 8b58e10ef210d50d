package controllers

import (
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// The worker's own tests (internal/clusterchannels) run the worker against a real API
// server as its ServiceAccount, with exactly the Role and RoleBinding the operator
// applies: these exports let them build those objects instead of a hand-made copy that
// could drift from what production grants.

// DesiredWorkerRole is the Role the operator applies for a tenant's worker, granting
// read access to the named Secrets only.
func DesiredWorkerRole(t *platformv1.Tenant, secretNames []string) *rbacv1ac.RoleApplyConfiguration {
	return desiredRole(t, secretNames)
}

// DesiredWorkerRoleBinding binds the worker's Role to its ServiceAccount.
func DesiredWorkerRoleBinding(t *platformv1.Tenant) *rbacv1ac.RoleBindingApplyConfiguration {
	return desiredRoleBinding(t)
}

// ChannelSecretNames lists the Secrets a namespace's channels reference: the Role's
// resourceNames.
func ChannelSecretNames(channels []platformv1.MetaChannel) []string {
	return channelSecretNames(channels)
}

// WorkerSecretNames lists every Secret the worker's Role names: the channels',
// the tenant's subject key and the subjects of pending deletion requests.
func WorkerSecretNames(channels []platformv1.MetaChannel, requests []platformv1.DeletionRequest) []string {
	return workerSecretNames(channels, requests)
}
