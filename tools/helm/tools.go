// Package helm pins the helm command the deploy tests install the chart
// with on the real node (deploy/node_test.go), as users run `helm install`,
// `helm upgrade` and `helm uninstall`. It is a module of its own, so the
// Helm CLI's dependencies (kubectl, oras, sql drivers) stay out of Vigil's
// go.mod; hack/testenv/build.sh builds it.
package helm
