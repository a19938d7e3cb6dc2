#!/usr/bin/env bash
# How long `vigil run` takes to stop (SIGTERM to exit) with many Go TLS
# executables attached, for two git refs side by side (as root):
#
#   hack/bench/tlsstop.sh OLD_REF NEW_REF
#
# Without refs (`make bench`) it times the checked-out HEAD alone.
#
# It starts TLSSTOP_BINARIES (40) copies of a small Go program linking
# crypto/tls, each its own file (the TLS uprobes are attached per file: 9 a
# Go executable), then, TLSSTOP_ROUNDS (2) times, runs each ref's agent with
# only the eBPF collector, alternating which goes first, and prints per run:
# seconds from start until the TLS discovery has attached every copy, the
# files and uprobes attached (other Go TLS programs on the host count too),
# and seconds from SIGTERM to exit. The machine is shared: run it when quiet
# and compare the runs of one invocation only.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
  echo "tlsstop bench: skipped, attaching uprobes needs root"
  exit 0
fi
old=${1:-}
new=${2:-HEAD}
variants="old new"
if [ -z "$old" ]; then variants=new; fi
n=${TLSSTOP_BINARIES:-40}
rounds=${TLSSTOP_ROUNDS:-2}
w=$(mktemp -d)
pids=()
agent=
cleanup() {
  if [ -n "$agent" ]; then kill -KILL "$agent" 2>/dev/null || true; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for r in $variants; do git worktree remove --force "$w/src-$r" 2>/dev/null || true; done
  rm -rf "$w"
}
trap cleanup EXIT

for r in $variants; do
  ref=$old
  [ "$r" = new ] && ref=$new
  git worktree add --quiet --detach "$w/src-$r" "$ref"
  (cd "$w/src-$r" && go build -o "$w/vigil-$r" ./cmd/vigil)
  git worktree remove --force "$w/src-$r"
done

cat >"$w/tlsprog.go" <<'EOF'
package main

import (
	"crypto/tls"
	"os"
	"time"
)

// Links crypto/tls's (*Conn).Write and Read, and idles.
func main() {
	if len(os.Args) > 5 {
		c := tls.Client(nil, nil)
		_, _ = c.Write(nil)
		_, _ = c.Read(nil)
	}
	time.Sleep(time.Hour)
}
EOF
go build -o "$w/tlsprog" "$w/tlsprog.go"
mkdir "$w/bin"
for i in $(seq "$n"); do
  cp "$w/tlsprog" "$w/bin/tls-$i"
  "$w/bin/tls-$i" &
  pids+=($!)
done
printf 'log: {format: json}\ncollectors:\n  ebpf:\n    enabled: true\n    max_tls_targets: %d\n' $((n + 64)) >"$w/vigil.yaml"

# run R: one agent start, attach and stop.
run() {
  local r=$1 log=$w/log-$1 addr start attached stop go files probes
  mkdir -p "$w/tmp-$r"
  start=$(date +%s.%N)
  TMPDIR=$w/tmp-$r "$w/vigil-$r" run --config "$w/vigil.yaml" --web.listen-address 127.0.0.1:0 2>"$log" &
  agent=$!
  for _ in $(seq 600); do
    addr=$(grep -o '"msg":"vigil is ready".*"address":"[^"]*"' "$log" | grep -o '"address":"[^"]*"' | cut -d'"' -f4 || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "$r: agent not ready"; cat "$log"; exit 1; }
  go=0
  for _ in $(seq 1200); do
    go=$(curl -sf "http://$addr/metrics" | awk '/^vigil_ebpf_tls_attached\{library="go"\}/ {print $2}' || echo 0)
    [ "${go:-0}" -ge "$n" ] && break
    sleep 0.1
  done
  attached=$(date +%s.%N)
  [ "${go:-0}" -ge "$n" ] || { echo "$r: only $go Go files attached"; exit 1; }
  sleep 2 # the second look at late processes
  files=$(curl -sf "http://$addr/metrics" | awk '/^vigil_ebpf_tls_attached\{/ {s += $2} END {print s}')
  probes=$(grep -o '"msg":"TLS followed with uprobes".*"probes":[0-9]*' "$log" | grep -o '"probes":[0-9]*$' | cut -d: -f2 | paste -sd+ | bc)
  stop=$(date +%s.%N)
  kill -TERM "$agent"
  wait "$agent" || true
  agent=
  printf '%s: attached %d Go copies in %.1f s; %s files, %s uprobes inspected; SIGTERM to exit %.1f s\n' \
    "$r" "$n" "$(echo "$attached - $start" | bc)" "$files" "$probes" "$(echo "$(date +%s.%N) - $stop" | bc)"
}

for i in $(seq "$rounds"); do
  if [ "$variants" = new ]; then
    run new
  elif [ $((i % 2)) = 1 ]; then
    run old
    run new
  else
    run new
    run old
  fi
done
