#!/usr/bin/env bash
# make testenv-up: builds what is missing, then starts the whole test
# environment in the background (Kubernetes with a real node and two kwok nodes, Prometheus,
# Alertmanager, node_exporter, VictoriaLogs, otelcol, HAProxy) and prints its
# endpoints. State, data and logs: ${VIGIL_TESTENV_STATE:-.cache/testenv}.
# Stop it with hack/testenv/down.sh (make testenv-down).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
state="${VIGIL_TESTENV_STATE:-$root/.cache/testenv}"
cd "$root"

if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
	echo "testenv: already running (pid $(cat "$state/pid")); endpoints:"
	cat "$state/env"
	exit 0
fi

"$root/hack/testenv/build.sh"
rm -rf "$state"
mkdir -p "$state"
go build -o "$state/testenv-up" ./internal/testenv/cmd/testenv-up
setsid nohup "$state/testenv-up" -state "$state" >"$state/testenv-up.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$state/pid"

for _ in $(seq 600); do
	[ -f "$state/ready" ] && break
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "testenv: failed to start; log:" >&2
		tail -n 60 "$state/testenv-up.log" >&2
		rm -f "$state/pid"
		exit 1
	fi
	sleep 0.5
done
if [ ! -f "$state/ready" ]; then
	echo "testenv: not ready after 5 minutes; see $state/testenv-up.log" >&2
	exit 1
fi

echo "testenv: up (pid $pid); logs in $state/logs"
cat "$state/env"
echo
echo "Use it with:  source $state/env   (kubeconfig: $(grep KUBECONFIG "$state/env" | cut -d'"' -f2))"
echo "Nodes:        source $state/env && \$VIGIL_KUBECTL get nodes -o wide"
echo "Images:       make image && \$VIGIL_NODE_CTR images import --local bin/vigil-image-\$(go env GOARCH).tar"
echo "              (pods run imported images with imagePullPolicy: Never; pod IPs in \$VIGIL_NODE_POD_CIDR are routed from this host)"
echo "Stop it with: make testenv-down"
