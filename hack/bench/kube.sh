#!/usr/bin/env bash
# kube collector: enriching a workload identity from the informer cache
# versus what a call per event would cost (GET pod + GET ReplicaSet) on a
# real API server, measured in one run. Ratios only: absolute times depend
# on the machine's load.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(go test -run '^$' -bench '^BenchmarkEnrich$' -benchmem -count 3 ./collectors/kube/ 2>&1)
echo "$out" | awk '
/^BenchmarkEnrich\/cache-/   { c += $3; ca += $(NF-1); n++ }
/^BenchmarkEnrich\/api-get-/ { g += $3; ga += $(NF-1); m++ }
END {
  if (n == 0 || m == 0) { print "benchmarks did not run"; exit 1 }
  printf "%-34s %14s %12s\n", "scenario (30 pods, 1 node)", "ns/op (mean)", "allocs/op"
  printf "%-34s %14.0f %12.0f\n", "Enrich from the informer cache", c/n, ca/n
  printf "%-34s %14.0f %12.0f\n", "GET pod + GET ReplicaSet per event", g/m, ga/m
  printf "%-34s %14.0f\n", "API call / cache", (g/m)/(c/n)
}'
