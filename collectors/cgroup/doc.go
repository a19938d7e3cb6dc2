// Package cgroup reports per-cgroup CPU and memory metrics for containers,
// Kubernetes pods and systemd services, labelled with the workload identity
// derived from the cgroup path, on cgroup v2, v1 and the hybrid of both.
//
// The resolver that maps a PID or a cgroup2 ID to a cgroup path and
// identity, for the collectors that see processes rather than cgroups,
// lives with the identity in collectors/workload.
//
// Only Linux has cgroups: on other systems the package is empty and the
// collector is not registered.
package cgroup
