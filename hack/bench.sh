#!/usr/bin/env bash
# `make bench`: Go benchmarks, then each side-by-side scenario in
# hack/bench/*.sh (each prints its own table). Results are ratios measured in
# one run on this machine, never pass/fail on wall-clock time.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== Go benchmarks"
go test -run '^$' -bench . -benchmem -benchtime "${BENCHTIME:-1s}" ./... 2>&1 | grep -E '^(Benchmark|ok|FAIL|PASS|pkg:|goos|goarch|cpu)' || true
for s in hack/bench/*.sh; do
  [ -e "$s" ] || continue
  echo
  echo "== $(basename "$s" .sh)"
  bash "$s"
done
