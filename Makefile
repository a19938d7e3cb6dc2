# Vigil — run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
export VIGIL_CACHE ?= $(HOME)/.cache/vigil
LDFLAGS := -X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REVISION) \
	-X github.com/prometheus/common/version.Branch=main
# Packages whose tests need no root, no kernel feature and no server.
TEST_TIMEOUT ?= 30m

.PHONY: help build image image-push run test test-unit test-unit-unprivileged faults soak deps testenv-build testenv-up testenv-down bench lint generate check-generate clean

help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/vigil, the node agent (static, no cgo: the capability drop needs it; docs/security.md), and bin/vigil-tool (rule unit tests and other tools that never run on a node).
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/vigil ./cmd/vigil
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/vigil-tool ./cmd/vigil-tool

# Platforms of the image index (make image IMAGE_PLATFORMS=linux/amd64).
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
IMAGE_FLAGS = -version $(VERSION) -revision $(REVISION) -branch main -platforms $(IMAGE_PLATFORMS) -out bin

image: ## Build the OCI image without Docker (static binary, linux/amd64+arm64 index, reproducible): bin/vigil-image/ (OCI layout), bin/vigil-image-<arch>.tar (docker-archive); prints the index digest.
	$(GO) run ./hack/image $(IMAGE_FLAGS)

image-push: ## Build the image and push it to $(REGISTRY)/vigil:<chart appVersion>, e.g. make image-push REGISTRY=registry.example.com/team.
	@if [ -z "$(REGISTRY)" ]; then echo "image-push: REGISTRY is empty; use make image-push REGISTRY=registry.example.com/team" >&2; exit 1; fi
	$(GO) run ./hack/image $(IMAGE_FLAGS) -push $(REGISTRY)

run: build ## Run the agent on this host with the embedded default configuration (http://localhost:19100/metrics).
	./bin/vigil run $(ARGS)

deps: ## Install the Debian packages and Go tools the tests need (as root; idempotent).
	bash hack/install-deps.sh

testenv-build: deps ## Build (or reuse from $(VIGIL_CACHE)) the test servers: Kubernetes, etcd, kwok, VictoriaLogs, OTel Collector.
	bash hack/testenv/build.sh

testenv-up: testenv-build ## Start the whole test environment in the background and print its endpoints and kubeconfig.
	bash hack/testenv/up.sh

testenv-down: ## Stop the environment started by testenv-up.
	bash hack/testenv/down.sh

test: testenv-build ## Install what the tests need, then run every test (vet, gofmt, generated-code check, go test) against real servers.
	bash hack/test.sh

faults: testenv-build ## Run the full fault-injection suite on a real node, Vigil installed from the Helm chart (every scenario live and again in dry-run), and write docs/faults-report.md.
	FAULTS_FULL=1 FAULTS_REPORT=$(CURDIR)/docs/faults-report.md $(GO) test -count=1 -timeout 40m -parallel 4 -v -run TestFaults ./faults

soak: ## Run the one-hour soak (as root): the agent with its default configuration and live webhook policies beside healthy but noisy services (2 % 5xx, slow bursts, clean restarts, a dependency's 2 % 5xx); expects zero actions and zero alerts (docs/detection.md#soak). make test runs a 3-minute form.
	VIGIL_SOAK=1h $(GO) test -count=1 -v -run TestSoak -timeout 70m ./rules/defaults/

test-unit: ## Run only the tests that need no servers or root (fast): -short skips every test server (internal/testenv) and root.
	$(GO) test -short ./...

test-unit-unprivileged: ## Prove test-unit needs no root and no server: each package's -short tests as nobody, CI=true, servers hidden (run as root).
	bash hack/test-unit-unprivileged.sh

bench: build ## Run the Go benchmarks and every side-by-side scenario in hack/bench/.
	bash hack/bench.sh

.PHONY: fuzz
fuzz: ## Run every Go fuzz target for FUZZTIME each (default 20s; FUZZ=regexp picks targets); a failing input lands in the package's testdata/fuzz/.
	GO="$(GO)" bash hack/fuzz.sh

lint: ## go vet, gofmt and staticcheck (built once into $(VIGIL_CACHE)), zero findings.
	bash hack/lint.sh

generate: ## Regenerate generated code (bpf2go objects, dashboards JSON, RBAC from deploy/rbac/rules.yaml, docs tables).
	$(GO) generate ./...

check-generate: ## Regenerate and fail if anything changed (CI).
	bash hack/check-generate.sh

clean: ## Remove build output (not the $(VIGIL_CACHE) tool cache).
	rm -rf bin
