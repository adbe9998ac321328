# gatehouse — make help lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TARGET_DIR ?= $(CURDIR)/target
BIN_DEBUG := $(CARGO_TARGET_DIR)/debug/gatehouse
BIN_RELEASE := $(CARGO_TARGET_DIR)/release/gatehouse
CONFIGS := $(wildcard config/*.yaml)

.PHONY: help deps build release run test lint fmt check-config policy-test bench bench-scale bench-smoke bench-micro fuzz clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

deps: ## Install the system packages the build and tests need (Debian; uses sudo if not root)
	@scripts/deps.sh

build: deps ## Build the debug binary
	$(CARGO) build --bin gatehouse

release: deps ## Build the optimised binary (target/release/gatehouse)
	$(CARGO) build --release --bin gatehouse

run: build ## Demo: gatehouse on http://127.0.0.1:8080 in front of a demo app
	GATEHOUSE_BIN=$(BIN_DEBUG) scripts/demo.sh

test: deps ## Everything CI runs: unit + integration tests, policy tests, config checks
	$(CARGO) build --bin gatehouse
	$(CARGO) test --lib --bins --tests -- --test-threads=2
	$(CARGO) test --benches
	$(MAKE) --no-print-directory bench-smoke
	$(MAKE) --no-print-directory policy-test
	$(MAKE) --no-print-directory check-config

lint: ## rustfmt check + clippy with warnings denied
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

policy-test: ## Run the table tests of the shipped policies (policies/tests/*.yaml)
	$(CARGO) build --bin gatehouse
	$(BIN_DEBUG) policy test --policies-dir policies policies/tests/*.yaml

bench: deps release ## BENCH.md: every lane side by side + scale checks -> loadtest/results/<date>/ and README
	GATEHOUSE_BIN=$(BIN_RELEASE) python3 loadtest/bench.py

bench-scale: deps release ## Only the scale checks (10 vs 10k routes, 1M sessions, RSS with 10k connections)
	GATEHOUSE_BIN=$(BIN_RELEASE) python3 loadtest/bench.py --only scale

bench-smoke: deps ## The bench harness for ~1 s per lane (debug build; checks every lane answers 2xx); in make test
	$(CARGO) build --bin gatehouse
	GATEHOUSE_BIN=$(BIN_DEBUG) python3 loadtest/bench.py --smoke

bench-micro: ## Criterion benchmarks: policy core (evaluation, cache hit, 10k routes) and the identity path
	$(CARGO) bench --bench policy
	$(CARGO) bench --bench identity

check-config: ## Run `gatehouse check` on every shipped config (and so every shipped policy)
	@scripts/example-certs.sh
	$(CARGO) build --bin gatehouse
	@for f in $(CONFIGS); do $(BIN_DEBUG) check -c $$f || exit 1; done

TARGET ?= policy_parse
SECONDS ?= 60
fuzz: ## libFuzzer run (nightly + cargo-fuzz): make fuzz TARGET=policy_parse|config_parse|path_canonicalize|ticket_open SECONDS=60
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	mkdir -p /tmp/gatehouse-fuzz-found
	cd fuzz && cargo +nightly fuzz run $(TARGET) /tmp/gatehouse-fuzz-found corpus/$(TARGET) seeds/$(TARGET) -- -max_total_time=$(SECONDS)

clean: ## Remove build output
	$(CARGO) clean
