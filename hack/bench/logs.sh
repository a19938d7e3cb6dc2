#!/usr/bin/env bash
# `make bench` scenario: Vigil's log pipeline vs the OpenTelemetry Collector's
# filelog receiver, one after the other on the same generated file, each
# shipping to the same sink (hack/bench/logsink: Loki push for Vigil, OTLP/HTTP
# for the Collector, whose contrib Loki exporter no longer exists). Prints
# lines/s, CPU seconds per million lines, lines per CPU-second, peak RSS and
# the ratios, all measured in this one run. CPU and RSS are read from
# /proc/<pid> of each agent alone (the sink's work is not counted). The sink
# counts distinct line ids, so a run is done when every line arrived, and
# lines delivered twice are shown (dups).
#
# Knobs: LOGS_BENCH_LINES (default 1000000), LOGS_BENCH_LINE_BYTES (default 120),
# OTELCOL (path to an otelcol with filelog + otlphttp; default: the test
# harness's build of tools/otelcol under $VIGIL_CACHE/bin/otelcol-*-<key>/).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
lines=${LOGS_BENCH_LINES:-1000000}
width=${LOGS_BENCH_LINE_BYTES:-120}
cache=${VIGIL_CACHE:-$HOME/.cache/vigil}
tmp=$(mktemp -d /tmp/vigil-bench-logs.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

vigil=$tmp/vigil
nice go build -o "$vigil" ./cmd/vigil
nice go build -o "$tmp/logsink" ./hack/bench/logsink

# The Collector: the test harness's build of tools/otelcol, found by the same
# cache key internal/testenv uses; hack/testenv/build.sh is a no-op on a cache
# hit and builds it (a few CPU-minutes) on a miss.
otelcol=${OTELCOL:-}
otel_note=""
if [ -z "$otelcol" ] && [ -n "${VIGIL_TESTENV_BIN:-}" ] && [ -x "$VIGIL_TESTENV_BIN/otelcol" ]; then
	otelcol=$VIGIL_TESTENV_BIN/otelcol
fi
if [ -z "$otelcol" ]; then
	key=$(bash hack/testenv/build.sh --key otelcol)
	if ! ls "$cache"/bin/otelcol-*-"$key"/otelcol >/dev/null 2>&1; then
		echo "otelcol: not in $cache/bin for tools/otelcol key $key; building it (hack/testenv/build.sh otelcol)" >&2
	fi
	if VIGIL_CACHE=$cache bash hack/testenv/build.sh otelcol >"$tmp/otelcol-build.log" 2>&1; then
		otelcol=$(ls "$cache"/bin/otelcol-*-"$key"/otelcol 2>/dev/null | head -1 || true)
	else
		tail -20 "$tmp/otelcol-build.log" >&2
		otel_note="hack/testenv/build.sh otelcol failed (output above)"
	fi
fi
recv="" exp=""
if [ -z "$otelcol" ] || [ ! -x "$otelcol" ]; then
	otel_note=${otel_note:-"no otelcol binary (make testenv-build builds it under $cache/bin/otelcol-*/)"}
	otelcol=""
elif ! comps=$("$otelcol" components 2>/dev/null); then
	otel_note="$otelcol components failed"
	otelcol=""
else
	# v0.165 names them file_log and otlp_http; older builds filelog and otlphttp.
	for n in file_log filelog; do grep -q "name: $n\$" <<<"$comps" && { recv=$n; break; }; done
	for n in otlp_http otlphttp; do grep -q "name: $n\$" <<<"$comps" && { exp=$n; break; }; done
	if [ -z "$recv" ] || [ -z "$exp" ]; then
		otel_note="$otelcol lacks the filelog receiver or the otlphttp exporter (see tools/otelcol/builder-config.yaml)"
		otelcol=""
	fi
fi

# The input: numbered lines of a fixed width, like a busy application log.
awk -v n="$lines" -v w="$width" 'BEGIN {
	pad = sprintf("%*s", w, ""); gsub(/ /, "x", pad)
	for (i = 0; i < n; i++) {
		s = sprintf("2024-01-02T03:04:05.%06dZ level=info msg=\"request served\" id=%09d path=/api/v1/items ", i % 1000000, i)
		print substr(s pad, 1, w - 1)
	}
}' >"$tmp/app.log"
bytes=$(stat -c %s "$tmp/app.log")

"$tmp/logsink" -addr-file "$tmp/sink.addr" 2>"$tmp/sink.err" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/sink.addr" ] && break; sleep 0.05; done
sink=http://$(cat "$tmp/sink.addr")

clk=$(getconf CLK_TCK)
# cpu_seconds PID: user+system CPU of the process so far.
cpu_seconds() { awk -v t="$clk" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }
rss_mib() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
now() { date +%s.%N; }

# measure NAME PID START: waits until the sink holds every line (distinct ids),
# then records wall time, CPU and peak RSS of PID. It gives up, saying why,
# when the agent exits, when the sink's count stops moving for 30 s (lines
# lost: the agent would never finish) or after 150 s in all.
measure() {
	local name=$1 pid=$2 start=$3 cpu0=$4 n last=-1 moved=$SECONDS deadline=$((SECONDS + 150)) why=""
	while :; do
		n=$(curl -fsS "$sink/count" || echo 0)
		[ "$n" -ge "$lines" ] && break
		if [ "$n" != "$last" ]; then last=$n moved=$SECONDS; fi
		if ! kill -0 "$pid" 2>/dev/null; then
			why="exited early"
		elif [ $((SECONDS - moved)) -ge 30 ]; then
			why="stalled: no new line in the sink for 30 s"
		elif [ $SECONDS -ge $deadline ]; then
			why="too slow: not done after 150 s"
		fi
		if [ -n "$why" ]; then
			echo "$name: $why; the sink has $n of $lines lines ($(curl -fsS "$sink/stats" || true)). Its last log lines:" >&2
			grep -v '^[[:space:]]' "$tmp/$name.log" | tail -5 | cut -c1-400 >&2
			echo "$name FAILED $why" >>"$tmp/results"
			return 1
		fi
		sleep 0.1
	done
	local end cpu rss stats
	end=$(now)
	cpu=$(cpu_seconds "$pid")
	rss=$(rss_mib "$pid")
	stats=$(curl -fsS "$sink/stats")
	awk -v name="$name" -v s="$start" -v e="$end" -v c0="$cpu0" -v c="$cpu" -v r="$rss" -v n="$lines" -v st="$stats" 'BEGIN {
		split(st, kv, /[ =]/)
		w = c - c0
		printf "%s %.0f %.2f %.0f %s %.2f %s %.2f\n", name, n / (e - s), w * 1e6 / n, n / w, r, e - s, kv[6], c }' >>"$tmp/results"
}

# settle PID: waits until the agent has started (its CPU time stops moving
# for a second, at most 20 s), so that start-up is not counted per line.
settle() {
	local prev=-1 cur i
	for i in $(seq 40); do
		sleep 0.5
		cur=$(cpu_seconds "$1")
		[ "$cur" = "$prev" ] && return 0
		prev=$cur
	done
}
mkdir -p "$tmp/in-vigil" "$tmp/in-otelcol"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
failed=0

# --- Vigil: only the logs collector (the rules and healing engines, on by
# default, are off: they are not part of a log pipeline and their start-up
# alone costs about 0.05 CPU s); a 1 MiB batch (about 8,700 lines).
cat >"$tmp/vigil.yaml" <<EOF
server:
  listen_address: "127.0.0.1:$(port)"
rules: {enabled: false}
healing: {enabled: false}
collectors:
  host: {enabled: false}
  cgroup: {enabled: false}
  ebpf: {enabled: false}
  logs:
    enabled: true
    pod_logs: {enabled: false}
    scan_interval: 200ms   # find the new file as soon as otelcol's filelog does (its poll_interval)
    inputs:
      - paths: [$tmp/in-vigil/*.log]
        format: plain
        labels: {job: bench}
    positions_file: $tmp/vigil-state/positions.json
    loki:
      url: $sink/loki/api/v1/push
      batch_size: 1048576
      batch_wait: 1s
      buffer: {dir: $tmp/vigil-state/buffer, max_bytes: 4294967296}
EOF
"$vigil" run --config "$tmp/vigil.yaml" >"$tmp/vigil.log" 2>&1 &
vpid=$!
pids+=($vpid)
settle "$vpid"
cpu0=$(cpu_seconds "$vpid")
start=$(now)
ln "$tmp/app.log" "$tmp/in-vigil/app.log"
measure vigil "$vpid" "$start" "$cpu0" || failed=1
kill "$vpid"
wait "$vpid" 2>/dev/null || true

# --- OpenTelemetry Collector: filelog from the start of the file; the
# exporter batches about as much as Vigil (8,192 to 16,384 records, 1 s) and
# compresses with snappy as Vigil's Loki push does. block_on_overflow makes a
# full sending queue hold the receiver back: with the default (reject) the
# receiver outpaces the exporter, batches are dropped ("sending queue is
# full") and the sink never sees every line.
if [ -n "$otelcol" ]; then
	curl -fsS -X POST "$sink/reset" >/dev/null
	cat >"$tmp/otelcol.yaml" <<EOF
receivers:
  $recv:
    include: [$tmp/in-otelcol/*.log]
    start_at: beginning
exporters:
  $exp:
    logs_endpoint: $sink/v1/logs
    compression: snappy
    sending_queue:
      enabled: true
      block_on_overflow: true
      sizer: items
      queue_size: 65536
      batch:
        flush_timeout: 1s
        min_size: 8192
        max_size: 16384
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [$recv]
      exporters: [$exp]
EOF
	"$otelcol" --config "$tmp/otelcol.yaml" >"$tmp/otelcol.log" 2>&1 &
	opid=$!
	pids+=($opid)
	settle "$opid"
	cpu0=$(cpu_seconds "$opid")
	start=$(now)
	ln "$tmp/app.log" "$tmp/in-otelcol/app.log"
	measure otelcol "$opid" "$start" "$cpu0" || failed=1
	kill "$opid"
	wait "$opid" 2>/dev/null || true
fi

printf 'file: %d lines of %d bytes (%d MB); sink: Loki push + snappy (vigil), OTLP/HTTP + snappy (otelcol), every record decoded and counted\n' \
	"$lines" "$width" $((bytes / 1000000))
echo "each agent is started and settled first; the file then appears in the folder it watches (a hard link); CPU s/1M lines and lines/CPU-s count the CPU from then on, total CPU includes start-up"
printf '%-8s %10s %15s %12s %8s %7s %6s %10s\n' agent lines/s "CPU s/1M lines" lines/CPU-s "RSS MiB" wall_s dups "total CPU"
while read -r name lps rest; do
	if [ "$lps" = FAILED ]; then
		printf '%-8s FAILED: %s\n' "$name" "$rest"
		continue
	fi
	read -r cpm lpc rss wall dups total <<<"$rest"
	printf '%-8s %10s %15s %12s %8s %7s %6s %10s\n' "$name" "$lps" "$cpm" "$lpc" "$rss" "$wall" "$dups" "$total"
done <"$tmp/results"
if [ -z "$otelcol" ]; then
	echo "otelcol: skipped: $otel_note"
elif [ "$failed" = 0 ]; then
	awk '{ lps[$1] = $2; lpc[$1] = $4; rss[$1] = $5 } END {
		printf "vigil/otelcol: lines/s %.1fx, lines per CPU-second %.1fx (goal >= 5x), peak RSS %.2fx\n",
			lps["vigil"] / lps["otelcol"], lpc["vigil"] / lpc["otelcol"], rss["vigil"] / rss["otelcol"] }' "$tmp/results"
fi
exit "$failed"
