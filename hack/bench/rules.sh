#!/usr/bin/env bash
# `make bench` scenario for the rules engine (issue 7): one evaluation cycle
# of 1,000 rules over 50,000 series (goal: <= 200 ms), one ingest cycle of
# 50,000 series, and the local TSDB's memory for 50,000 series at the
# default retention (20 minutes of 5 s samples). Numbers are from this run
# on this machine; wall time includes waiting for a core when the machine
# is shared, so CPU time per cycle is printed too.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(go test ./rules/ -run '^$' -bench 'RuleEvaluationCycle|Ingest50kSeries' -benchtime "${RULES_BENCHTIME:-3x}" 2>&1
  go test ./rules/ -run '^$' -bench 'TSDBMemory50kSeries' -benchtime 1x 2>&1)
echo "$out" | grep -E '^Benchmark' >/dev/null || { echo "$out"; exit 1; }
metric() { echo "$out" | awk -v b="$1" -v u="$2" '$1 ~ b { for (i = 2; i < NF; i++) if ($(i+1) == u) print $i }'; }
eval_ms=$(metric RuleEvaluationCycle ms/cycle)
eval_cpu=$(metric RuleEvaluationCycle cpu-ms/cycle)
ingest_ns=$(metric Ingest50kSeries ns/op)
heap=$(metric TSDBMemory50kSeries heap-MiB)
per=$(metric TSDBMemory50kSeries heap-B/series)
printf '%-52s %12s %12s\n' "scenario" "measured" "goal"
printf '%-52s %9s ms %9s ms\n' "evaluate 1,000 rules / 50,000 series (wall)" "$eval_ms" 200
printf '%-52s %9s ms %9s ms\n' "evaluate 1,000 rules / 50,000 series (CPU)" "$eval_cpu" 200
printf '%-52s %9.1f ms %12s\n' "ingest 50,000 series (one cycle)" "$(echo "$ingest_ns / 1000000" | bc -l)" "-"
printf '%-52s %8s MiB %12s\n' "local TSDB heap, 50,000 series x 240 samples" "$heap" "-"
printf '%-52s %10s B %12s\n' "  per series" "$per" "-"
printf '%-52s %11.2f %12s\n' "ratio wall / goal" "$(echo "$eval_ms / 200" | bc -l)" "<= 1"
