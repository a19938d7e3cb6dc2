#!/usr/bin/env bash
# Side-by-side cost of Vigil's eBPF programs (run by `make bench`, as root):
# a 20,000-connection loopback connect loop and a 20,000-request keep-alive
# HTTP loop (and a 20,000-command Redis GET loop against redis-server when it
# is installed; EBPF_BENCH_REDIS_REQUESTS=0 leaves it out), two 20,000-query
# PostgreSQL SELECT 1 loops, simple and extended query protocol, against a
# private cluster it starts when Debian's postgresql is installed
# (EBPF_BENCH_PG_REQUESTS=0 leaves them out), a 20,000-request
# keep-alive HTTPS loop (Go crypto/tls both sides: the TLS uprobes;
# EBPF_BENCH_HTTPS_REQUESTS), a 20,000-round-trip
# UDP loop that is not DNS and a 20,000-query DNS/UDP loop
# (EBPF_BENCH_UDP_REQUESTS, EBPF_BENCH_DNS_REQUESTS) and a 20,000-call gRPC loop
# over one clear-text HTTP/2 connection (EBPF_BENCH_GRPC_REQUESTS), each timed without
# programs, with do-nothing programs at the same hooks (the kernel's dispatch
# cost) and with Vigil's, in rotating order per round of one run, plus events
# consumed per second and lost.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
  echo "ebpf bench: skipped, loading eBPF programs needs root"
  exit 0
fi
go build -o "${TMPDIR:-/tmp}/vigil-ebpf-overhead" ./collectors/ebpf/cmd/ebpf-overhead
"${TMPDIR:-/tmp}/vigil-ebpf-overhead" -connections "${EBPF_BENCH_CONNECTIONS:-20000}" -requests "${EBPF_BENCH_REQUESTS:-20000}" -redis-requests "${EBPF_BENCH_REDIS_REQUESTS:-20000}" -pg-requests "${EBPF_BENCH_PG_REQUESTS:-20000}" -https-requests "${EBPF_BENCH_HTTPS_REQUESTS:-20000}" -udp-requests "${EBPF_BENCH_UDP_REQUESTS:-20000}" -dns-requests "${EBPF_BENCH_DNS_REQUESTS:-20000}" -grpc-requests "${EBPF_BENCH_GRPC_REQUESTS:-20000}" -rounds "${EBPF_BENCH_ROUNDS:-3}" ${EBPF_BENCH_FLAGS:-}
rm -f "${TMPDIR:-/tmp}/vigil-ebpf-overhead"
