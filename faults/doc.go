// Package faults is Vigil's fault-injection suite (`make faults`, and a short
// form in `make test`). Its tests break real things on purpose and check,
// end to end through Vigil with its default rules and a remediation
// policy, that the fault is detected, which action is taken,
// how long it takes, and that nothing else is touched. See docs/faults.md.
//
// What runs (TestFaultsOnRealNode): a real Kubernetes control plane and a
// real node from internal/testenv (kubelet, containerd, runc, kube-proxy),
// Vigil installed as the DaemonSet from the Helm chart (deploy/helm/vigil)
// with its default rules and the suite's policies in the chart's values,
// and the workloads as Deployments of the fault app's image; the report's
// kubelet columns come from the pods' status (kubeletView, watchKubelet).
// The scenarios are the table allScenarios (scenarios other files add are
// appended to extraScenarios). The fault app is the main package
// faults/faultapp, whose modes are registered in faults/faultapp/mode_*.go;
// a fault is injected by writing a mode into the app's control file
// (control), on a hostPath volume of every fault app pod. The fill
// scenario mounts a small filesystem on the node (mountFill) and the
// bystanders include a CronJob (startCronJob).
package faults
