#!/usr/bin/env bash
# `make bench` scenario for the exporters (docs/otel.md): samples per second
# exported and CPU seconds per million samples, for Prometheus remote write
# and OTLP (gRPC and HTTP), measured in one run against a sink server in the
# benchmark's process. Each iteration gathers 10,000 counter series over 100
# workloads, converts, encodes, queues and sends them, and waits for the
# backend's answer. Ratios are relative to remote write.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(go test -run '^$' -bench 'BenchmarkExport' -benchtime "${OTEL_BENCHTIME:-30x}" ./exporters/ 2>&1) || { echo "$out"; exit 1; }
echo "$out" | awk '
/^BenchmarkExport\// {
  split($1, p, "/"); name = p[2]; sub(/-[0-9]+$/, "", name)
  for (i = 2; i <= NF; i++) {
    if ($(i+1) == "samples/s") sps[name] = $i
    if ($(i+1) == "cpu-s/Msamples") cpu[name] = $i
  }
  order[++n] = name
}
END {
  if (n == 0) { print "no benchmark results"; exit 1 }
  base = "remotewrite"
  printf "%-12s %14s %16s %12s %12s\n", "exporter", "samples/s", "CPU s/Msample", "x rate", "x CPU"
  for (i = 1; i <= n; i++) {
    k = order[i]
    printf "%-12s %14.0f %16.2f %12.2f %12.2f\n", k, sps[k], cpu[k], sps[k] / sps[base], cpu[k] / cpu[base]
  }
}'
echo "(load average: $(cut -d' ' -f1-3 /proc/loadavg); wall-clock rates on a shared machine vary, CPU per sample less so)"
