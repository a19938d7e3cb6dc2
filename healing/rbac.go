package healing

import _ "embed"

// RBAC is the agent's RBAC manifest (healing/rbac.yaml, generated from
// deploy/rbac/rules.yaml by deploy/cmd/genrbac): a ServiceAccount
// vigil/vigil, the ClusterRole vigil with exactly what the collectors,
// Kubernetes actuators, guards, audit and alert enrichment need, and a Role
// for the Leases in the vigil namespace.
//
//go:embed rbac.yaml
var RBAC []byte
