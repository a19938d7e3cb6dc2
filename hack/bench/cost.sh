#!/usr/bin/env bash
# What Vigil costs on a node, side by side with its peers on this host in one
# run (docs/cost.md, README "What Vigil costs on a node"):
#   - binary: the agent's size stripped (-ldflags "-s -w"), against the 60 MB
#     budget, and whether it links cloud SDKs or test frameworks;
#   - idle: each agent with its default configuration for COST_BENCH_SECONDS
#     (default 120) with a scrape every 15 s: CPU % of one core
#     (utime+stime from /proc/PID/stat) and resident memory at the end
#     (/proc/PID/smaps_rollup: Rss, anonymous, file-backed);
#   - 100 pods: the same after 100 pods' worth of real cgroups (v1
#     hierarchies and the unified one, cgroupfs layout, a pause and an app
#     container each with a process in it) are created on the host.
# Peers: prometheus-node-exporter (Debian, default collectors) and
# coroot-node-agent when COROOT_NODE_AGENT names a binary (its Go module is
# not served by the module proxy here, so it is not built; the table says so).
# COST_BENCH_STEADY=<seconds> (default 0) keeps the pods and goes on in
# windows of 300 s for that long, a row each: the local TSDB fills for its
# retention (20 minutes by default) and the memory grows with it, so the
# rows after 20 minutes are the steady state the DaemonSet's memory request
# must cover.
# COST_BENCH_BASE=<git revision> adds the agent built from that revision as
# a peer ("vigil@<rev>"), to measure a change side by side in one run.
# COST_BENCH_PPROF=<dir> builds the agent with -tags vigil_pprof and saves a
# CPU profile of each window there (<dir>/<phase>.prof).
# Vigil runs as root (eBPF); without root the bench is skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
  echo "cost bench: skipped, the agent's eBPF collector and the pod cgroups need root"
  exit 0
fi
W=${COST_BENCH_SECONDS:-120}
PODS=${COST_BENCH_PODS:-100}
SCRAPE=15
NE=$(command -v prometheus-node-exporter || command -v node_exporter || true)
COROOT=${COROOT_NODE_AGENT:-}

tmp=$(mktemp -d)
pids=()
cgroot=vigil-cost-bench-$$
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h$cgroot" ] || continue
    find "$h$cgroot" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "-- binary"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/vigil" ./cmd/vigil
size=$(stat -c %s "$tmp/vigil")
printf '%-34s %8.1f MB (budget 60 MB: %s)\n' "vigil stripped" "$(awk -v s="$size" 'BEGIN{print s/1e6}')" "$(awk -v s="$size" 'BEGIN{print (s<=60e6)?"within":"OVER"}')"
# Cloud SDKs and test frameworks: how many of their packages are in the
# import graph (the embedded TSDB imports prometheus/config, which imports
# the remote-write auth packages), and how many bytes of their code the
# linker kept (symbol sizes of an unstripped build).
CGO_ENABLED=0 go build -trimpath -o "$tmp/vigil-syms" ./cmd/vigil
go tool nm -size "$tmp/vigil-syms" >"$tmp/nm.txt"
rm -f "$tmp/vigil-syms"
pkgs=$(go list -deps ./cmd/vigil)
for m in github.com/aws/ github.com/Azure/ cloud.google.com/go/ google.golang.org/api github.com/stretchr/testify; do
  n=$(grep -c "^$m" <<<"$pkgs" || true)
  if [ "$n" -gt 0 ]; then
    printf '%-34s %3d packages imported, %6.1f KB of code kept\n' "$m" "$n" \
      "$(awk -v m="$m" 'index($4, m) == 1 {s += $2} END {print s/1e3}' "$tmp/nm.txt")"
  fi
done
for p in rules/ruletest promql/promqltest util/teststorage; do
  if grep -q "/$p\$" <<<"$pkgs"; then printf '%-34s linked\n' "$p"; fi
done
BASE=${COST_BENCH_BASE:-}
PPROF=${COST_BENCH_PPROF:-}
if [ -n "$PPROF" ]; then
  mkdir -p "$PPROF"
  CGO_ENABLED=0 go build -trimpath -tags vigil_pprof -ldflags "-s -w" -o "$tmp/vigil" ./cmd/vigil
fi
if [ -n "$BASE" ]; then
  mkdir -p "$tmp/base"
  git archive "$BASE" | tar -x -C "$tmp/base"
  (cd "$tmp/base" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/vigil-base" ./cmd/vigil)
  printf '%-34s %8.1f MB\n' "vigil@$BASE stripped" "$(awk -v s="$(stat -c %s "$tmp/vigil-base")" 'BEGIN{print s/1e6}')"
fi
[ -n "$NE" ] && printf '%-34s %8.1f MB\n' "node_exporter (Debian)" "$(awk -v s="$(stat -c %s "$NE")" 'BEGIN{print s/1e6}')"
[ -n "$COROOT" ] && printf '%-34s %8.1f MB\n' "coroot-node-agent" "$(awk -v s="$(stat -c %s "$COROOT")" 'BEGIN{print s/1e6}')"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_ready() {
  for _ in $(seq 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "cost bench: $1 not ready" >&2; cat "$tmp"/*.log >&2 || true; exit 1
}

names=(); apids=(); urls=()
vport=$(free_port)
"$tmp/vigil" run --web.listen-address=127.0.0.1:"$vport" >"$tmp/vigil.log" 2>&1 &
pids+=($!); names+=(vigil); apids+=($!); urls+=("http://127.0.0.1:$vport/metrics")
if [ -n "$BASE" ]; then
  bport=$(free_port)
  "$tmp/vigil-base" run --web.listen-address=127.0.0.1:"$bport" >"$tmp/vigil-base.log" 2>&1 &
  pids+=($!); names+=("vigil@$BASE"); apids+=($!); urls+=("http://127.0.0.1:$bport/metrics")
fi
if [ -n "$NE" ]; then
  nport=$(free_port)
  "$NE" --web.listen-address=127.0.0.1:"$nport" >"$tmp/ne.log" 2>&1 &
  pids+=($!); names+=(node_exporter); apids+=($!); urls+=("http://127.0.0.1:$nport/metrics")
fi
if [ -n "$COROOT" ]; then
  cport=$(free_port)
  "$COROOT" --listen=127.0.0.1:"$cport" --cgroupfs-root=/sys/fs/cgroup >"$tmp/coroot.log" 2>&1 &
  pids+=($!); names+=(coroot-node-agent); apids+=($!); urls+=("http://127.0.0.1:$cport/metrics")
fi
for u in "${urls[@]}"; do wait_ready "$u"; done

# eBPF events Vigil read (the host's traffic and process churn it traced).
ebpf_events() { curl -s "$1" | awk '/^vigil_ebpf_events_total/ {s += $NF} END {printf "%d", s}'; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rollup() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/smaps_rollup"; }
hz=$(getconf CLK_TCK)

# window LABEL: W seconds with a scrape of every agent each 15 s, then a row
# per agent.
window() {
  local t0=() e0=() i n=${#apids[@]}
  for ((i = 0; i < n; i++)); do
    t0[i]=$(ticks "${apids[i]}")
    [[ ${names[i]} == vigil* ]] && e0[i]=$(ebpf_events "${urls[i]}")
  done
  local prof=""
  if [ -n "$PPROF" ]; then
    curl -s -o "$PPROF/$1.prof" "http://127.0.0.1:6061/debug/pprof/profile?seconds=$W" &
    prof=$!
  fi
  local end=$((SECONDS + W))
  while [ $SECONDS -lt $end ]; do
    for u in "${urls[@]}"; do curl -s -o /dev/null "$u"; done
    sleep $SCRAPE
  done
  [ -n "$prof" ] && wait "$prof"
  for ((i = 0; i < n; i++)); do
    local p=${apids[i]} d
    d=$(($(ticks "$p") - t0[i]))
    local series
    series=$(curl -s "${urls[i]}" | grep -vc '^#' || true)
    local ev="" tsdb=""
    if [[ ${names[i]} == vigil* ]]; then
      ev=$(($(ebpf_events "${urls[i]}") - e0[i]))
      tsdb=$(curl -s "${urls[i]}" | awk '/^vigil_rules_tsdb_series / {printf "%d", $NF}')
    fi
    printf '%-10s %-18s %7.2f %8.1f %8.1f %8.1f %8s %8s %8s\n' "$1" "${names[i]}" \
      "$(awk -v d="$d" -v hz="$hz" -v w="$W" 'BEGIN{print d*100/hz/w}')" \
      "$(awk -v k="$(rollup "$p" Rss)" 'BEGIN{print k/1024}')" \
      "$(awk -v k="$(rollup "$p" Anonymous)" 'BEGIN{print k/1024}')" \
      "$(awk -v k="$(rollup "$p" Pss_File)" 'BEGIN{print k/1024}')" "$series" "$ev" "$tsdb"
  done
}

# Past Vigil's start-up settling (it hands back start-up pages after 30 s).
sleep 35
echo
echo "-- idle and with $PODS pods, ${W}s each, a scrape every ${SCRAPE}s; memory MiB"
printf '%-10s %-18s %7s %8s %8s %8s %8s %8s %8s\n' phase agent "cpu%" rss anon file series events tsdb
window idle

# PODS pods of the cgroupfs layout, a pause and an app container each, each
# holding a sleeping process, in every v1 hierarchy and the unified one.
hier=()
for h in memory cpu,cpuacct cpu cpuacct pids blkio unified; do
  [ -d "/sys/fs/cgroup/$h" ] && [ ! -L "/sys/fs/cgroup/$h" ] && hier+=("/sys/fs/cgroup/$h")
done
for ((p = 0; p < PODS; p++)); do
  uid=$(printf '%08x-0000-4000-8000-%012x' $$ "$p")
  for c in 0 1; do
    id=$(printf '%056x%08x' "$p" "$c")
    sleep 100000 &
    sp=$!; pids+=("$sp")
    for h in "${hier[@]}"; do
      d="$h/$cgroot/kubepods/besteffort/pod$uid/$id"
      mkdir -p "$d" && echo "$sp" >"$d/cgroup.procs"
    done
  done
done
sleep $SCRAPE
window "${PODS}pods"
steady=${COST_BENCH_STEADY:-0}
if [ "$steady" -gt 0 ]; then
  start=$SECONDS
  W=300
  while [ $((SECONDS - start)) -lt "$steady" ]; do
    window "+$(((SECONDS - start + W) / 60))m"
  done
fi

if [ -z "$COROOT" ]; then
  echo
  echo "coroot-node-agent: not measured: github.com/coroot/coroot-node-agent is not served by the Go module proxy here (403); where it is built, set COROOT_NODE_AGENT=/path/to/coroot-node-agent to add it. It needs kprobes (it exits when its path_get kprobe cannot be attached), so it cannot run on a kernel without them (docs/cost.md)"
fi
