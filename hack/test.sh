#!/usr/bin/env bash
# The whole test suite: static checks, generated-code check, then every Go
# test against real servers. Run through `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-}"
echo "== go vet"
go vet ./...
echo "== gofmt"
out=$(gofmt -l $(git ls-files '*.go' | grep -v '_bpfel.go$\|_bpfeb.go$')) || true
if [ -n "$out" ]; then echo "gofmt needed:"; echo "$out"; exit 1; fi
if [ -x hack/check-generate.sh ] || [ -f hack/check-generate.sh ]; then
  echo "== generated code is up to date"
  bash hack/check-generate.sh
fi
echo "== go test"
# -p 2: two packages at a time on two cores; real servers make tests I/O bound.
go test -p 2 -timeout "${TEST_TIMEOUT:-30m}" -count=1 ./... 2>&1 | tee /tmp/vigil-test.log
