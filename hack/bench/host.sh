#!/usr/bin/env bash
# Side-by-side: Vigil with only the host collector vs the Debian
# prometheus-node-exporter restricted to the collectors that cover the same
# metrics, on this machine, in one run. For each: CPU time per scrape of
# /metrics (utime+stime from /proc/<pid>/stat over N scrapes) and resident
# memory (VmRSS after the scrapes, VmHWM peak), then Vigil/node_exporter
# ratios. Needs bin/vigil (`make build`) and prometheus-node-exporter.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${HOST_BENCH_SCRAPES:-300}
VIGIL=${VIGIL_BIN:-bin/vigil}
NE=$(command -v prometheus-node-exporter || command -v node_exporter || true)
[ -x "$VIGIL" ] || { echo "host bench: $VIGIL missing (run make build)" >&2; exit 1; }
[ -n "$NE" ] || { echo "host bench: prometheus-node-exporter missing (apt-get install -y prometheus-node-exporter)" >&2; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Disable every other registered collector: the loader's "unknown collector"
# error lists the known ones.
printf 'collectors:\n  zz-list-collectors: {}\n' > "$tmp/probe.yaml"
known=$("$VIGIL" config check "$tmp/probe.yaml" 2>&1 | sed -n 's/.*unknown collector (known: \(.*\)).*/\1/p' | tr -d ',' || true)
vport=$(free_port)
{
  printf 'server:\n  listen_address: 127.0.0.1:%s\nlog:\n  level: warn\ncollectors:\n' "$vport"
  for c in $known; do
    if [ "$c" = host ]; then printf '  host: {}\n'; else printf '  %s:\n    enabled: false\n' "$c"; fi
  done
} > "$tmp/vigil.yaml"
"$VIGIL" config check "$tmp/vigil.yaml" >/dev/null

nport=$(free_port)
"$VIGIL" run --config "$tmp/vigil.yaml" >"$tmp/vigil.log" 2>&1 &
pids+=($!); vpid=$!
# The same collectors and exclusions as the host collector's defaults
# (collectors/host/config.go, collectors/host/diff_test.go).
"$NE" --web.listen-address=127.0.0.1:"$nport" --collector.disable-defaults \
  --collector.cpu --collector.meminfo --collector.loadavg --collector.stat --collector.vmstat \
  --collector.filesystem --collector.diskstats --collector.netdev --collector.uname --collector.time \
  --collector.timex --collector.filefd --collector.conntrack \
  '--collector.filesystem.mount-points-exclude=^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)' \
  '--collector.diskstats.device-exclude=^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$' \
  '--collector.netdev.device-exclude=' >"$tmp/ne.log" 2>&1 &
pids+=($!); npid=$!

wait_ready() {
  for _ in $(seq 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "host bench: $1 not ready" >&2; cat "$tmp"/*.log >&2; exit 1
}
vurl=http://127.0.0.1:$vport/metrics
nurl=http://127.0.0.1:$nport/metrics
wait_ready "$vurl"; wait_ready "$nurl"

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

measure() { # name pid url
  local urls=() i
  for i in $(seq "$N"); do urls+=("$3"); done
  curl -s "${urls[@]:0:10}" >/dev/null                 # warm up
  local t0 t1
  t0=$(ticks "$2")
  curl -s "${urls[@]}" >/dev/null
  t1=$(ticks "$2")
  local host_samples all_samples
  all_samples=$(curl -s "$3" | grep -vc '^#')
  host_samples=$(curl -s "$3" | grep -c '^node_')
  # name cpu_ms_per_scrape rss_kb hwm_kb node_samples all_samples
  echo "$1 $(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$N" 'BEGIN{printf "%.3f", d*1000/hz/n}') $(status_kb "$2" VmRSS) $(status_kb "$2" VmHWM) $host_samples $all_samples"
}

# Interleave two rounds so load on the shared machine hits both alike.
r1=$(measure vigil "$vpid" "$vurl"); r2=$(measure node_exporter "$npid" "$nurl")
r3=$(measure vigil "$vpid" "$vurl"); r4=$(measure node_exporter "$npid" "$nurl")
printf '%s\n%s\n%s\n%s\n' "$r1" "$r3" "$r2" "$r4" | awk -v n="$N" '
  { cpu[$1]+=$2/2; rss[$1]=$3; hwm[$1]=$4; ns[$1]=$5; all[$1]=$6 }
  END {
    printf "host metrics, %d scrapes x 2 rounds (CPU = utime+stime of the server per scrape)\n", n
    printf "%-14s %14s %10s %10s %12s %12s\n", "server", "cpu ms/scrape", "RSS MiB", "peak MiB", "node_* smpl", "all samples"
    for (s in cpu) printf "%-14s %14.3f %10.1f %10.1f %12d %12d\n", s, cpu[s], rss[s]/1024, hwm[s]/1024, ns[s], all[s]
    if (cpu["node_exporter"] > 0 && rss["node_exporter"] > 0)
      printf "ratio vigil/node_exporter: cpu %.2f  rss %.2f  peak %.2f\n", cpu["vigil"]/cpu["node_exporter"], rss["vigil"]/rss["node_exporter"], hwm["vigil"]/hwm["node_exporter"]
  }'
