// Package security plays the attacker inside one tenant against the real API
// server, with the operator running and the admission policies that
// config/default ships installed: the tenant's worker (its ServiceAccount
// system:serviceaccount:<namespace>:ingest-worker, with exactly the Role the
// operator grants) and a namespace editor (a user bound to the built-in edit
// ClusterRole in the tenant's namespace, with the rules the shipped editor role
// aggregates into it).
//
// Each test is one attack: it proves the attempt fails and that nothing is
// read, changed or deleted. This is where the next attack idea goes: write it
// here as a test first, watch it succeed against the code, then close the hole.
package security
