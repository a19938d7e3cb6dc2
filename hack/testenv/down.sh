#!/usr/bin/env bash
# make testenv-down: stops the environment that up.sh started. Logs stay in
# the state folder until the next up.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
state="${VIGIL_TESTENV_STATE:-$root/.cache/testenv}"

if [ ! -f "$state/pid" ]; then
	echo "testenv: not running"
	exit 0
fi
pid="$(cat "$state/pid")"
if kill -TERM "$pid" 2>/dev/null; then
	for _ in $(seq 120); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "testenv: pid $pid still running after 60s; killing its process group" >&2
		kill -KILL -- "-$pid" 2>/dev/null || true
	fi
fi
rm -f "$state/pid" "$state/ready"
echo "testenv: stopped; logs in $state/logs"
