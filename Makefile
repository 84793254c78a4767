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

.PHONY: all build run test unit schema lint fmt bench clean deps static static-check bench-lifecycle

# The in-pod helpers run in any runner image and in Alpine's docker:dind:
# one static binary (glibc, crt-static; it needs no NSS).
STATIC_TARGET := x86_64-unknown-linux-gnu
STATIC_BIN := $(CARGO_TARGET_DIR)/$(STATIC_TARGET)/release/dind-injector
# What the lifecycle tests use (Debian packages): a real dockerd and docker
# CLI, a static busybox for a tiny image, openssl (the fake daemon), curl,
# unshare/chroot (util-linux, coreutils).
DEPS_PACKAGES := docker.io busybox-static openssl curl util-linux

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

## make test: every test — unit, golden, property, CLI, lifecycle (real
## processes in a simulated pod, a real dockerd), the static binary in an
## empty chroot — and the schema check. Needs root (unshare, chroot, dockerd).
test: deps unit static-check schema

## make deps: install the system packages the lifecycle tests need, if missing.
deps:
	@missing=""; \
	for p in $(DEPS_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "==> apt-get install$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

## make static: the release binary, statically linked (runs on musl images too).
static:
	RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --release --target $(STATIC_TARGET)
	@echo "==> $(STATIC_BIN)"

static-check: static
	tests/static/chroot.sh "$(STATIC_BIN)"

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

## make bench-lifecycle: init, sidecar readiness and memory figures (docs/performance.md).
bench-lifecycle: deps static
	@command -v hyperfine >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine
	benches/lifecycle.sh "$(STATIC_BIN)"

## make bench: criterion benchmark of the engine (see docs/performance.md).
bench:
	cargo bench --locked --bench engine

clean:
	cargo clean
