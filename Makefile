# dind-injector — the two set-up commands are `make run` and `make test`.
# Everything they need is installed here; a fresh machine needs only the
# Rust, Python and Go toolchains.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# Builds are slow on small machines: share one target directory between
# clones and keep downloaded tools where the next run finds them.
CACHE_DIR ?= $(HOME)/.cache/dind-injector
export CARGO_TARGET_DIR ?= $(CACHE_DIR)/target
BIN := $(CARGO_TARGET_DIR)/debug/dind-injector

# The Kubernetes release whose strict JSON schema the injected pods must pass.
KUBERNETES_SCHEMA_VERSION ?= 1.37.0
KUBERNETES_VALIDATE_VERSION ?= 1.37.0
VENV := $(CACHE_DIR)/venv-kv-$(KUBERNETES_VALIDATE_VERSION)

.PHONY: all build run test unit schema lint fmt bench clean

all: build

build:
	cargo build --locked

## make run: inject the example runner Job and show the result (no cluster needed).
run: build
	@echo "==> $(BIN) inject -f examples/runner-job.yaml"
	@$(BIN) inject -f examples/runner-job.yaml
	@echo
	@echo "Try it on your own manifests (Pods, Jobs, CronJobs, ReplicaSets, Deployments, StatefulSets):"
	@echo "  $(BIN) inject -f your-runner.yaml            # or -f - to read stdin"
	@echo "  $(BIN) inject -f your-runner.yaml --mode native"

## make test: every test — unit, golden, property, CLI — and the schema check.
test: unit schema

# Benches are compiled by `make lint` (clippy --all-targets) and run by `make bench`.
unit:
	cargo test --locked --lib --bins --tests

$(VENV)/.installed:
	python3 -m venv "$(VENV)"
	"$(VENV)/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION)"
	touch "$@"

schema: $(VENV)/.installed
	"$(VENV)/bin/python" tests/schema/validate_golden.py "$(KUBERNETES_SCHEMA_VERSION)" tests/golden

lint:
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings

fmt:
	cargo fmt

## make bench: criterion benchmark of the engine (see docs/performance.md).
bench:
	cargo bench --locked --bench engine

clean:
	cargo clean
