// Package faults is Vigil's fault-injection suite (`make faults`, and a short
// form in `make test`). Its tests break real things on purpose and check,
// end to end through the vigil binary with its default rules and a
// remediation policy, that the fault is detected, which action is taken,
// how long it takes, and that nothing else is touched. See docs/faults.md.
//
// What runs: a real Kubernetes control plane from internal/testenv
// (etcd, kube-apiserver, controller-manager, scheduler, kwok nodes), the
// vigil binary built from this module with its eBPF, cgroup and kube
// collectors, and real processes in real memory cgroups that a stand-in
// kubelet (fakeKubelet, named so: no container runtime runs here) starts
// for the pods kwok schedules on the agent's node. The processes run the
// fault app, the main package faults/faultapp, whose modes are registered
// in faults/faultapp/mode_*.go; scenarios other files add are appended to
// extraScenarios (see allScenarios).
package faults
