package healing

import _ "embed"

// RBAC is the shipped RBAC manifest (healing/rbac.yaml): a ServiceAccount
// vigil/vigil, the ClusterRole vigil-healing with exactly what the
// Kubernetes actuators, guards, audit and alert enrichment need, and a
// Role for the Leases in the vigil namespace.
//
//go:embed rbac.yaml
var RBAC []byte
