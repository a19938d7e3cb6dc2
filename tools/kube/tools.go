// Package kube pins the Kubernetes control-plane binaries (kube-apiserver,
// kube-controller-manager, kube-scheduler) and kwok used by Vigil's test
// harness. It is a module of its own so that the main go.mod stays clean; the
// binaries are built by hack/testenv/build.sh.
package kube
