// Package faults is Vigil's fault-injection suite (`make faults`, and a short
// form in `make test`). Its tests break real things on purpose and check,
// end to end through Vigil with its default rules and a remediation
// policy, that the fault is detected, which action is taken,
// how long it takes, and that nothing else is touched. See docs/faults.md.
//
// One scenario table (allScenarios; scenarios other files add are appended
// to extraScenarios) drives two runners. TestFaultsOnRealNode: a real
// Kubernetes control plane and a real node from internal/testenv (kubelet,
// containerd, runc, kube-proxy), Vigil installed as the DaemonSet from the
// Helm chart (deploy/helm/vigil) with its default rules and the suite's
// policies in the chart's values, and the workloads as Deployments of the
// fault app's image; the report's kubelet columns come from the pods'
// status (kubeletView, watchKubelet). TestFaults: kwok nodes, the vigil
// binary as a process, and a stand-in kubelet (fakeKubelet, named so) that
// runs the fault app as real processes in real memory cgroups for the pods
// kwok schedules on the agent's node; it runs under `make faults` only,
// every scenario it runs having moved to the real node. The fault app is
// the main package faults/faultapp, whose modes are registered in
// faults/faultapp/mode_*.go; a fault is injected by writing a mode into
// the app's control file (control), a hostPath volume on the real node.
package faults
