#!/usr/bin/env bash
# `make bench` headline scenario (issues 11 and 19): time from a real fault
# to the remediation call on three paths: Vigil's local path with its
# default detection (default rules, evidence detection, event alerts), the
# conventional path (Prometheus scraping Vigil every 5 s and evaluating
# every 5 s, for: 0s; Alertmanager with group_wait 1s posting to Vigil's
# webhook) on the same faults in one run, and the conventional path with
# the kubernetes-mixin's for: durations (KubePodCrashLooping 15m,
# KubeAPIErrorsHigh 10m) on faults of its own, all at once, beside them.
# Faults: a process that exits non-zero (a crash loop for the mixin path),
# an HTTP server under steady load that starts answering 500, and one under
# open-loop load that hangs (reads each request, answers none; the mixin
# has no alert for it, so it has no mixin path). The driver is
# hack/bench/faultbench (docs/faultbench.md). Needs root (eBPF, cgroups)
# and Debian's prometheus and prometheus-alertmanager (make deps).
# About 15 minutes with the mixin path (its 15m for:), 10-15 without.
#
# Knobs: FAULTBENCH_RUNS (faults per scenario, default 15),
# FAULTBENCH_RPS (load per web server, 5xx and hang, default 50),
# FAULTBENCH_SCENARIOS (comma-separated, default crash,5xx,hang),
# FAULTBENCH_MIXIN=0 (skip the kubernetes-mixin path),
# FAULTBENCH_MIXIN_RUNS (its faults per scenario, default 4),
# FAULTBENCH_LOCAL_INTERVAL (Vigil's rules.evaluation_interval; unset: Vigil's default),
# FAULTBENCH_REPORT (also write the Markdown report to this file),
# FAULTBENCH_KEEP=1 (keep the work folder with every config and log).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	if [ "${CI:-}" = true ]; then echo "faults: needs root (eBPF programs, cgroups)" >&2; exit 1; fi
	echo "faults: skipped — needs root (eBPF programs, cgroups)"
	exit 0
fi
tmp=$(mktemp -d /tmp/vigil-bench-faults.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
nice go build -o "$tmp/vigil" ./cmd/vigil
nice go build -o "$tmp/faultbench" ./hack/bench/faultbench
args=(-vigil "$tmp/vigil"
	-runs "${FAULTBENCH_RUNS:-15}"
	-rps "${FAULTBENCH_RPS:-50}"
	-mixin-runs "${FAULTBENCH_MIXIN_RUNS:-4}")
[ "${FAULTBENCH_MIXIN:-1}" = 0 ] && args+=(-mixin-runs 0)
[ -n "${FAULTBENCH_SCENARIOS:-}" ] && args+=(-scenarios "$FAULTBENCH_SCENARIOS")
[ -n "${FAULTBENCH_LOCAL_INTERVAL:-}" ] && args+=(-local-interval "$FAULTBENCH_LOCAL_INTERVAL")
[ -n "${FAULTBENCH_REPORT:-}" ] && args+=(-report "$FAULTBENCH_REPORT")
[ "${FAULTBENCH_KEEP:-}" = 1 ] && args+=(-keep)
# The driver is not niced: it measures latency. It stops every process it
# started and removes its cgroups on exit, also on failure or SIGINT/SIGTERM.
"$tmp/faultbench" "${args[@]}"
