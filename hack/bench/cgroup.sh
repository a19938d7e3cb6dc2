#!/usr/bin/env bash
# cgroup collector: one full scrape of a fabricated 660-cgroup node versus
# the hierarchy walk alone (what a cached walk would save), measured in one
# run. Ratios only: absolute times depend on the machine's load.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(go test -run '^$' -bench '^Benchmark(Update|Walk)$' -benchmem -count 3 ./collectors/cgroup/ 2>&1)
echo "$out" | awk '
/^BenchmarkUpdate-/ { u += $3; ua += $(NF-1); n++ }
/^BenchmarkWalk-/   { w += $3; wa += $(NF-1); m++ }
END {
  if (n == 0 || m == 0) { print "benchmarks did not run"; exit 1 }
  printf "%-28s %14s %12s\n", "scenario (660 cgroups)", "ns/op (mean)", "allocs/op"
  printf "%-28s %14.0f %12.0f\n", "full Update (walk + read)", u/n, ua/n
  printf "%-28s %14.0f %12.0f\n", "walk only", w/m, wa/m
  printf "%-28s %14.2f\n", "walk / Update", (w/m)/(u/n)
}'
