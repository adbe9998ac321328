# gatehouse — make help lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TARGET_DIR ?= $(CURDIR)/target
BIN_DEBUG := $(CARGO_TARGET_DIR)/debug/gatehouse
BIN_RELEASE := $(CARGO_TARGET_DIR)/release/gatehouse
CONFIGS := $(wildcard config/*.yaml)

.PHONY: help deps build release run test unit integration lint fmt check-config clean

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

test: deps ## Everything CI runs: unit + integration tests, config checks
	$(CARGO) build --bin gatehouse
	$(CARGO) test --all-targets -- --test-threads=2
	$(MAKE) --no-print-directory check-config

lint: ## rustfmt check + clippy with warnings denied
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

check-config: ## Run `gatehouse check` on every shipped config
	@scripts/example-certs.sh
	$(CARGO) build --bin gatehouse
	@for f in $(CONFIGS); do $(BIN_DEBUG) check -c $$f || exit 1; done

clean: ## Remove build output
	$(CARGO) clean
