#!/usr/bin/env bash
# Healing engine: time from an alert entering the alert stream to the
# actuator's call returning (and its record written), per actuator, against
# real backends (a process, an HTTP receiver, HAProxy's runtime API, the
# testenv Kubernetes API server). "act" is the actuator's own call; the
# rest is matching, rendering, reading the target's state for the guards,
# the guards, the Lease (cluster-scoped actions) and the audit. Ratios are
# to the webhook action, measured in this one run. Kubernetes rows need
# `make testenv-build`; without it they are left out.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${HEALING_BENCH_N:-200x}
out=$(go test -run '^$' -bench '^BenchmarkAlertToAction$' -benchtime "$n" ./healing/ 2>&1 || true)
echo "$out" | awk '
/^BenchmarkAlertToAction\// {
  name = $1; sub(/^BenchmarkAlertToAction\//, "", name); sub(/-[0-9]+$/, "", name); sub(/^kubernetes\//, "k8s ", name)
  rows[++n] = name; total[name] = $3 / 1e6; act[name] = $5
  if (name == "webhook") base = $3 / 1e6
}
END {
  if (n == 0) { print "healing bench: benchmarks did not run"; exit 1 }
  printf "%-24s %16s %10s %14s\n", "actuator", "alert→done ms", "act ms", "vs webhook"
  for (i = 1; i <= n; i++) {
    r = rows[i]
    printf "%-24s %16.3f %10.3f %14.2f\n", r, total[r], act[r], (base > 0 ? total[r] / base : 0)
  }
}'
echo "$out" | grep -E '^(--- SKIP|    .*testenv: .*not built)' | head -3 || true
