# gatehouse — make help lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TARGET_DIR ?= $(CURDIR)/target
BIN_DEBUG := $(CARGO_TARGET_DIR)/debug/gatehouse
BIN_RELEASE := $(CARGO_TARGET_DIR)/release/gatehouse
CONFIGS := $(wildcard config/*.yaml)

.PHONY: help deps build release run test lint fmt check-config policy-test bench bench-scale bench-smoke bench-micro loadtest faults zero-downtime soak fuzz fuzz-cmin clean

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

DURATION ?= 20s
loadtest: release ## k6 against the demo stack: API load (cookie, bearer), login flow, route mix, sign-out storm; DURATION=20s each
	GATEHOUSE_BIN=$(BIN_RELEASE) DURATION=$(DURATION) loadtest/k6/run.sh

faults: deps ## The fault tests (part of make test) with their measured FAULT lines printed
	set -o pipefail; $(CARGO) test --test faults -- --nocapture --test-threads=2 2>&1 | grep -E '^(FAULT|      |test |test result)'

zero-downtime: deps ## Reloads, binary upgrade and SIGTERM drain under load (part of make test), figures printed
	set -o pipefail; $(CARGO) test --test lifecycle -- --nocapture --test-threads=2 2>&1 | grep -E '^(ZERO-DOWNTIME|test |test result)'

SOAK_SECONDS ?= 1800
soak: deps release ## Soak at half the measured max rate through an authenticated route (SOAK_SECONDS=1800); RSS growth < 5%, no errors
	SOAK_SECONDS=$(SOAK_SECONDS) GATEHOUSE_BIN=$(BIN_RELEASE) scripts/soak.sh

check-config: ## Run `gatehouse check` on every shipped config (and so every shipped policy)
	@scripts/example-certs.sh
	$(CARGO) build --bin gatehouse
	@for f in $(CONFIGS); do $(BIN_DEBUG) check -c $$f || exit 1; done

FUZZ_TARGETS := policy_parse config_parse path_canonicalize ticket_open request_headers redirect_target
TARGET ?= $(FUZZ_TARGETS)
SECONDS ?= 60
FUZZ_FOUND ?= /tmp/gatehouse-fuzz-found

fuzz: ## libFuzzer (nightly + cargo-fuzz), every target in turn: make fuzz [SECONDS=60] [TARGET=request_headers]
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	@set -e; for t in $(TARGET); do \
		mkdir -p $(FUZZ_FOUND)/$$t; \
		dirs="corpus/$$t seeds/$$t"; \
		if [ -d fuzz/regressions/$$t ]; then dirs="$$dirs regressions/$$t"; fi; \
		echo "== fuzz $$t for $(SECONDS)s; new inputs go to $(FUZZ_FOUND)/$$t"; \
		(cd fuzz && cargo +nightly fuzz run $$t $(FUZZ_FOUND)/$$t $$dirs -- -max_total_time=$(SECONDS)); \
	done

fuzz-cmin: ## Fold what make fuzz found into fuzz/corpus, keeping inputs that reach gatehouse code
	@set -e; for t in $(TARGET); do \
		dirs=""; if [ -d $(FUZZ_FOUND)/$$t ]; then dirs=$(FUZZ_FOUND)/$$t; fi; \
		python3 fuzz/cmin.py $$t $$dirs; \
	done

clean: ## Remove build output
	$(CARGO) clean
