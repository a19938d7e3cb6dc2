// Package staticcheck pins the staticcheck command that `make lint` and
// `make test` run over Vigil's packages (hack/lint.sh). It is a module of
// its own, so the analyzer's dependencies stay out of Vigil's go.mod;
// hack/testenv/build.sh builds it into the version-keyed tool cache.
package staticcheck
