#!/usr/bin/env bash
# `make bench` scenario: Vigil's log pipeline vs the OpenTelemetry Collector's
# filelog receiver, one after the other on the same generated file, each
# shipping to the same sink (hack/bench/logsink: Loki push for Vigil, OTLP/HTTP
# for the Collector, whose contrib Loki exporter no longer exists). Prints
# lines/s, CPU seconds per million lines, lines per CPU-second, peak RSS and
# the ratios, all measured in this one run. CPU and RSS are read from
# /proc/<pid> of each agent alone (the sink's work is not counted).
#
# Knobs: LOGS_BENCH_LINES (default 1000000), LOGS_BENCH_LINE_BYTES (default 120),
# OTELCOL (path to an otelcol with filelog + otlphttp; default: the testenv
# build under $VIGIL_CACHE/bin/otelcol-*/otelcol).
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
go build -o "$vigil" ./cmd/vigil
go build -o "$tmp/logsink" ./hack/bench/logsink

otelcol=${OTELCOL:-}
if [ -z "$otelcol" ]; then
	if [ -n "${VIGIL_TESTENV_BIN:-}" ] && [ -x "$VIGIL_TESTENV_BIN/otelcol" ]; then
		otelcol=$VIGIL_TESTENV_BIN/otelcol
	else
		otelcol=$(ls -d "$cache"/bin/otelcol-*/otelcol 2>/dev/null | grep -v '\.tmp\.' | tail -1 || true)
	fi
fi
otel_note=""
if [ -z "$otelcol" ] || [ ! -x "$otelcol" ]; then
	otel_note="otelcol not built (make testenv-build builds it under $cache/bin/otelcol-*/)"
	otelcol=""
elif ! comps=$("$otelcol" components 2>/dev/null) || ! grep -q filelog <<<"$comps" || ! grep -q otlphttp <<<"$comps"; then
	otel_note="$otelcol lacks the filelog receiver or the otlphttp exporter: tools/otelcol/builder-config.yaml needs github.com/open-telemetry/opentelemetry-collector-contrib/receiver/filelogreceiver v0.165.0 and go.opentelemetry.io/collector/exporter/otlphttpexporter v0.165.0"
	otelcol=""
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

# measure NAME PID: waits until the sink has every line, then records wall
# time, CPU and peak RSS of PID.
measure() {
	local name=$1 pid=$2 start=$3 n deadline=$((SECONDS + 600))
	while :; do
		n=$(curl -fsS "$sink/count" || echo 0)
		[ "$n" -ge "$lines" ] && break
		if ! kill -0 "$pid" 2>/dev/null; then echo "$name exited early; see $tmp" >&2; return 1; fi
		if [ $SECONDS -ge $deadline ]; then echo "$name: only $n of $lines lines after 600 s" >&2; return 1; fi
		sleep 0.1
	done
	local end cpu rss
	end=$(now)
	cpu=$(cpu_seconds "$pid")
	rss=$(rss_mib "$pid")
	awk -v name="$name" -v s="$start" -v e="$end" -v c="$cpu" -v r="$rss" -v n="$lines" 'BEGIN {
		printf "%s %.0f %.2f %.0f %s %.2f\n", name, n / (e - s), c * 1e6 / n, n / c, r, e - s }' >>"$tmp/results"
}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- Vigil
cat >"$tmp/vigil.yaml" <<EOF
server:
  listen_address: "127.0.0.1:$(port)"
collectors:
  logs:
    enabled: true
    pod_logs: {enabled: false}
    inputs:
      - paths: [$tmp/app.log]
        format: plain
        labels: {job: bench}
    positions_file: $tmp/vigil-state/positions.json
    loki:
      url: $sink/loki/api/v1/push
      batch_size: 1048576
      batch_wait: 1s
      buffer: {dir: $tmp/vigil-state/buffer, max_bytes: 4294967296}
EOF
start=$(now)
"$vigil" run --config "$tmp/vigil.yaml" >"$tmp/vigil.log" 2>&1 &
vpid=$!
pids+=($vpid)
measure vigil "$vpid" "$start"
kill "$vpid"; wait "$vpid" 2>/dev/null || true

# --- OpenTelemetry Collector
if [ -n "$otelcol" ]; then
	curl -fsS -X POST "$sink/reset" >/dev/null
	cat >"$tmp/otelcol.yaml" <<EOF
receivers:
  filelog:
    include: [$tmp/app.log]
    start_at: beginning
exporters:
  otlp_http:
    logs_endpoint: $sink/v1/logs
    compression: none
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [filelog]
      exporters: [otlp_http]
EOF
	# Older builds name the exporter otlphttp.
	if ! "$otelcol" components 2>/dev/null | grep -q 'otlp_http'; then sed -i 's/otlp_http/otlphttp/' "$tmp/otelcol.yaml"; fi
	start=$(now)
	"$otelcol" --config "$tmp/otelcol.yaml" >"$tmp/otelcol.log" 2>&1 &
	opid=$!
	pids+=($opid)
	measure otelcol "$opid" "$start"
	kill "$opid"; wait "$opid" 2>/dev/null || true
fi

printf 'file: %d lines, %d MB; sink: Loki push (Vigil) / OTLP HTTP (otelcol), decoded and counted\n' "$lines" $((bytes / 1000000))
printf '%-10s %12s %16s %16s %10s %9s\n' agent lines/s "CPU s/1M lines" lines/CPU-s "RSS MiB" wall_s
while read -r name lps cpm lpc rss wall; do
	printf '%-10s %12s %16s %16s %10s %9s\n' "$name" "$lps" "$cpm" "$lpc" "$rss" "$wall"
done <"$tmp/results"
if [ -n "$otelcol" ]; then
	awk '{ lps[$1] = $2; lpc[$1] = $4; rss[$1] = $5 } END {
		printf "ratio vigil/otelcol: lines/s %.1fx, lines per CPU-second %.1fx (goal >= 5x), RSS %.2fx\n",
			lps["vigil"] / lps["otelcol"], lpc["vigil"] / lpc["otelcol"], rss["vigil"] / rss["otelcol"] }' "$tmp/results"
else
	echo "otelcol: skipped — $otel_note"
fi
