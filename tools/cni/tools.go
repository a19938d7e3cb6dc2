// Package cni pins the CNI plugins of the test environment's real node
// (bridge, host-local, loopback, portmap). It is a module of its own;
// hack/testenv/build.sh builds it.
package cni
