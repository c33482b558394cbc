# lbac-gateway — every target runs with the pinned Node.js 24 and tools from
# $(TOOLS_DIR), installed on first use by scripts/tools.sh (idempotent, cached
# outside the checkout).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

include scripts/versions.env
TOOLS_DIR ?= $(HOME)/.cache/lbac-gateway/tools
export LBAC_TOOLS_DIR := $(TOOLS_DIR)
NODE_BIN := $(TOOLS_DIR)/node-$(NODE_VERSION)/bin
OPA_BIN := $(TOOLS_DIR)/opa-$(OPA_VERSION)
export PATH := $(NODE_BIN):$(OPA_BIN):$(CURDIR)/node_modules/.bin:$(PATH)
RESULTS := .run/test-results

.PHONY: help soak bench tools demo-tools policy-tools bundle bench-tools deploy-tools deploy-check node-runtime deps build typecheck policy policy-test test test-unit test-e2e e2e-report run bench-rewrite bench-identity bench-latency bench-decision bench-cpu bench-cluster-cpu bench-ab bench-profile clean

help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

node-runtime: ## Node.js (NODE_VERSION in scripts/versions.env) into the tools cache
	@bash scripts/tools.sh node

tools: node-runtime ## all pinned tools (Node.js, OPA, Prometheus + promtool, Debian nginx, Helm, kubeconform, K8s schemas)
	@bash scripts/tools.sh opa prometheus nginx helm kubeconform k8s-schemas

# After `tools`: the e2e harness names the first target that installs a missing tool.
demo-tools: node-runtime ## only what make run needs (Prometheus)
	@bash scripts/tools.sh prometheus

policy-tools: node-runtime ## only what the policy targets need (OPA)
	@bash scripts/tools.sh opa

deploy-tools: node-runtime ## only what the chart checks need (Helm, kubeconform, Kubernetes JSON schemas)
	@bash scripts/tools.sh helm kubeconform k8s-schemas

deploy-check: deploy-tools deps ## helm lint + helm template (default and all-enabled values) + kubeconform -strict; dashboard metric names
	@vitest run --project unit test/deploy

bench-tools: node-runtime ## tools only benchmarks need (prom-label-proxy, the Go peer)
	@bash scripts/tools.sh prom-label-proxy

node_modules/.deps-stamp: package.json package-lock.json | node-runtime
	@echo "[deps] npm ci (node $$(node --version))"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: node_modules/.deps-stamp ## npm dependencies (npm ci)

build: deps ## compile TypeScript to dist/ (the CLI runs sources directly on Node 24)
	@npm run --silent build

typecheck: deps ## tsc --noEmit over src, test, e2e
	@echo "[typecheck] tsc"
	@tsc -p tsconfig.json --noEmit

policy: policy-tools ## opa fmt/check/test (coverage gate) and build wasm/policy.wasm
	@bash scripts/build-policy.sh

bundle: policy-tools ## signed OPA bundle of policies/ → .run/bundle/bundle.tar.gz (BUNDLE_SIGNING_KEY, BUNDLE_REVISION)
	@bash scripts/build-bundle.sh

policy-test: policy-tools ## opa fmt/check/test only
	@mkdir -p $(RESULTS)
	@bash scripts/build-policy.sh test-only | tee $(RESULTS)/opa.txt

test: tools deps ## everything: typecheck, opa test, vitest unit + e2e; ends with "N passed, N failed"
	@mkdir -p $(RESULTS)
	@rm -f $(RESULTS)/vitest.json $(RESULTS)/opa.txt
	@touch $(RESULTS)/started
	@$(MAKE) --no-print-directory typecheck
	@echo "[build] dist/ (the container suite runs the compiled CLI)"
	@$(MAKE) --no-print-directory build
	@bash scripts/build-policy.sh test-only | tee $(RESULTS)/opa.txt || true
	@echo "[test] vitest (unit + e2e)"
	@# A failed test does not stop here: the summary below counts it.
	@bash scripts/vitest-run.sh --reporter=default --reporter=json --outputFile.json=$(RESULTS)/vitest.json || true
	@node scripts/e2e-report.ts --since $(RESULTS)/started || true
	@node scripts/test-summary.ts $(RESULTS)/vitest.json $(RESULTS)/opa.txt

test-unit: deps ## vitest unit project only
	@bash scripts/vitest-run.sh --project unit

test-e2e: tools deps ## vitest e2e project only (real backends; LBAC_E2E_MODE=containers: official images, e2e/README.md)
	@bash scripts/vitest-run.sh --project e2e

e2e-report: node-runtime ## table of the e2e results (backend × tenant × endpoint: run, matches, leaks) → e2e/results/report.md
	@node scripts/e2e-report.ts

run: demo-tools deps ## demo: seeded Prometheus + gateway, prints tokens and curl commands
	@node scripts/demo.ts

bench: tools bench-tools deps ## gateway vs direct vs prom-label-proxy vs bare proxy (throughput with 1 worker and with one per core, then added latency) → bench/results/
	@node bench/gateway.ts
	@node bench/gateway.ts --workers auto
	@node bench/chart.ts
	@node bench/latency.ts

bench-latency: tools deps ## added latency in µs at fixed rates (open loop), same targets as bench → bench/results/
	@node bench/latency.ts

soak: tools deps ## 10 minutes of steady load: RSS and event-loop delay growth → bench/results/
	@node bench/soak.ts

bench-rewrite: deps ## rewrite latency over the corpus → bench/results/
	@node bench/rewrite.ts

bench-identity: deps ## verified-and-cached JWT cost per request (ES256, RS256) → bench/results/
	@node bench/identity.ts

bench-cpu: tools deps ## CPU µs per request: bare pass-through vs lbac-gateway (audit on/off), stub upstream → bench/results/
	@node bench/cpu.ts

bench-cluster-cpu: tools deps ## CPU µs per request of each process (primary, workers) at saturation, gateway vs pass-through with WORKERS=2 each → bench/results/
	@node bench/cluster-cpu.ts --workers $(or $(WORKERS),2)

bench-profile: tools deps ## where the gateway's CPU per request goes next to the bare pass-through's (needs perf) → bench/results/
	@node bench/profile.ts

bench-ab: tools deps ## CPU µs per request of this checkout's gateway vs BASE=<git rev>'s, loaded side by side (paired) → bench/results/
	@test -n "$(BASE)" || { echo "usage: make bench-ab BASE=<git rev>"; exit 2; }
	@node bench/ab.ts --base "$(BASE)"

bench-decision: deps ## policy decision cost: DecisionCache hit and uncached OPA-WASM evaluation → bench/results/
	@node bench/decision.ts

clean: ## remove build outputs (not the tools cache)
	rm -rf dist .run coverage
