// Package containerd pins containerd, ctr and the runc shim of the test
// environment's real node (internal/testenv/node.go). It is a module of its
// own; hack/testenv/build.sh builds it.
package containerd
