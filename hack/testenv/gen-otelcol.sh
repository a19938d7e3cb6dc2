#!/usr/bin/env bash
# Regenerates tools/otelcol from tools/otelcol/builder-config.yaml with the
# OpenTelemetry Collector builder, without compiling; the generated module is
# committed and built by hack/testenv/build.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root/tools/otelcol"
go run go.opentelemetry.io/collector/cmd/builder@v0.165.0 \
	--config=builder-config.yaml --skip-compilation --skip-get-modules
# One test-only dependency of the generated module is not served by the proxy.
go mod tidy -e
gofmt -w ./*.go
