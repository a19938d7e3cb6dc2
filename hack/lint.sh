#!/usr/bin/env bash
# Static checks: go vet, gofmt and staticcheck, each with zero findings.
# staticcheck is pinned by tools/staticcheck/go.mod and built once into the
# version-keyed tool cache by hack/testenv/build.sh. `make lint` and
# hack/test.sh (`make test`) run this.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== go vet"
go vet ./...
echo "== gofmt"
out=$(gofmt -l $(git ls-files '*.go' | grep -v '_bpfel.go$\|_bpfeb.go$')) || true
if [ -n "$out" ]; then echo "gofmt needed:"; echo "$out"; exit 1; fi
echo "== staticcheck"
bash hack/testenv/build.sh staticcheck >/dev/null
bin="${VIGIL_CACHE:-$HOME/.cache/vigil}/bin/staticcheck-v0.8.2-$(bash hack/testenv/build.sh --key staticcheck)/staticcheck"
# Linux and the default build tags: what CI builds and tests.
"$bin" -checks inherit ./...
echo "lint: no findings"
