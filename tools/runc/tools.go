// Package runc pins the OCI runtime of the test environment's real node
// (internal/testenv/node.go). It is a module of its own;
// hack/testenv/build.sh builds it (CGO, tags seccomp urfave_cli_no_docs).
package runc
