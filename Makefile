# dind-injector — the two set-up commands are `make run` and `make test`.
# Everything they need is installed here; a fresh machine needs only the
# Rust, Python and Go toolchains (Go builds Helm and kustomize for the
# deployment tests).

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


# The in-pod helpers run in any runner image and in Alpine's docker:dind:
# one static binary (glibc, crt-static; it needs no NSS).
STATIC_TARGET := x86_64-unknown-linux-gnu
STATIC_BIN := $(CARGO_TARGET_DIR)/$(STATIC_TARGET)/release/dind-injector
# What the lifecycle tests use (Debian packages): a real dockerd and docker
# CLI, a static busybox for a tiny image, openssl (the fake daemon), curl,
# unshare/chroot (util-linux, coreutils); Debian's docker-registry (the CNCF
# distribution registry) that tests/registry.rs serves test images from.
DEPS_PACKAGES := docker.io busybox-static openssl curl util-linux docker-registry
# The image (make image): buildah builds the Dockerfile without a daemon;
# the package tests push the chart and the image to Debian's docker-registry.
IMAGE_PACKAGES := buildah docker-registry
# The e2e node (make e2e): Debian's runc and CNI plugins beside the
# containerd built from its module, tini as PID 1 of the run's namespaces,
# ip and iptables for its network, a C compiler for the pause image.
E2E_PACKAGES := runc containerd containernetworking-plugins tini iproute2 iptables gcc libc6-dev python3

# Helm and kustomize for the deployment tests, built from their Go modules
# (no release binaries can be downloaded here) and cached by version, so only
# the first run pays (a few minutes on two cores).
TOOLS_DIR := $(CACHE_DIR)/tools
HELM_VERSION ?= v3.22.0
KUSTOMIZE_VERSION ?= v5.8.2
# Helm's release builds stamp its version and the Kubernetes version that
# `helm template` and `helm lint` assume (its client-go's minor, 1.37 for
# v3.22.0); a plain `go install` would assume 1.20 and lint against that.
HELM_KUBE_MINOR ?= 37
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	$(foreach pkg,pkg/chartutil pkg/lint/rules,-X helm.sh/helm/v3/$(pkg).k8sVersionMajor=1 -X helm.sh/helm/v3/$(pkg).k8sVersionMinor=$(HELM_KUBE_MINOR))
HELM := $(TOOLS_DIR)/helm-$(HELM_VERSION)-k8s1.$(HELM_KUBE_MINOR)/helm
KUSTOMIZE := $(TOOLS_DIR)/kustomize-$(KUSTOMIZE_VERSION)/kustomize
PYTEST_VERSION ?= 9.2.0

.PHONY: hot-functions soak fuzz fuzz-build chart image image-deps chart-policies all build run certs dev-certs test e2e e2e-deps install-packages bench-e2e unit schema deploy-test tools lint fmt bench bench-engine bench-load bench-instructions bench-lifecycle clean deps static static-check

all: build

build:
	cargo build --locked

WEBHOOK_ADDR ?= 127.0.0.1:8443
METRICS_ADDR ?= 127.0.0.1:9090

## make run: the webhook on https://$(WEBHOOK_ADDR)/mutate with dev certificates
## (generated into certs/ when missing), metrics on http://$(METRICS_ADDR)/metrics.
run: build certs/tls.crt
	@echo "dind-injector: webhook https://$(WEBHOOK_ADDR)/mutate, metrics http://$(METRICS_ADDR)/metrics (Ctrl-C stops)"
	@echo "Try it from another terminal:"
	@echo "  curl -sS --cacert certs/ca.crt -H 'Content-Type: application/json' --data @examples/admission-review.json https://$(WEBHOOK_ADDR)/mutate | python3 scripts/show-review.py examples/admission-review.json"
	@echo "Or offline, without the server:"
	@echo "  $(BIN) inject -f examples/runner-job.yaml"
	@exec $(BIN) serve --addr $(WEBHOOK_ADDR) --metrics-addr $(METRICS_ADDR) \
		--tls-cert certs/tls.crt --tls-key certs/tls.key --log-format text --shutdown-delay 0s

## make certs: (re)issue the dev serving certificate, keeping the dev CA.
certs/tls.crt:
	$(BIN) certs --out certs
certs: build
	$(BIN) certs --out certs

## make dev-certs: the dev overlay's serving certificate and CA, for
## `kubectl apply -k manifests/overlays/dev` (the caBundle comes from it).
DEV_CERTS := manifests/overlays/dev/certs
dev-certs: build
	$(BIN) certs --out $(DEV_CERTS) \
		--san dind-injector.dind-injector.svc --san dind-injector.dind-injector.svc.cluster.local


## make test: every test — unit, golden, property, CLI, server over real TLS,
## lifecycle (real processes in a simulated pod, a real dockerd), the static
## binary in an empty chroot — the schema check, and the deployment tests
## (Helm chart and kustomize manifests). Needs root (unshare, chroot, dockerd).
test: deps unit static-check schema deploy-test

## make e2e: the end-to-end suite against a real cluster — etcd,
## kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet built
## from the Kubernetes Go modules (tests/e2e/controlplane), containerd from
## its module, images built here (tests/e2e/images) — the real webhook and the
## project's own manifests; the first build takes about half an hour and is
## cached under $(CACHE_DIR)/e2e. One scenario: make e2e E2E_ARGS=job
## Helm and kustomize render what the shipped-manifests scenario applies.
E2E_ARGS ?=
e2e: tools e2e-deps image-deps static
	controlplane=$$(CACHE_DIR="$(CACHE_DIR)" tests/e2e/build-controlplane.sh); \
	containerd=$$(CACHE_DIR="$(CACHE_DIR)" tests/e2e/build-containerd.sh); \
	images=$$(CACHE_DIR="$(CACHE_DIR)" tests/e2e/build-images.sh); \
	injector=$$(CACHE_DIR="$(CACHE_DIR)" tests/e2e/build-injector-image.sh "$(STATIC_BIN)"); \
	DIND_E2E_CONTROLPLANE="$$controlplane" DIND_E2E_CONTAINERD="$$containerd" \
	DIND_E2E_IMAGES="$$images:$$injector" HELM="$(HELM)" KUSTOMIZE="$(KUSTOMIZE)" \
		cargo test --locked --features e2e --test e2e -- $(E2E_ARGS)

## make bench-e2e: what the webhook (the release build) adds to a pod
## creation through the real apiserver (docs/performance.md).
bench-e2e: static
	DIND_E2E_INJECTOR="$(STATIC_BIN)" $(MAKE) e2e E2E_ARGS=--bench

## make deps: install the system packages the lifecycle tests need, if missing.
deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(DEPS_PACKAGES)"
e2e-deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(E2E_PACKAGES)"
install-packages:
	@missing=""; \
	for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "==> apt-get install$$missing"; \
	  apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq $$missing; \
	fi

## make static: the release binary, statically linked (runs on musl images too).
static:
	RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --release --target $(STATIC_TARGET)
	@echo "==> $(STATIC_BIN)"

static-check: static
	tests/static/chroot.sh "$(STATIC_BIN)"
	tests/static/resident.sh "$(STATIC_BIN)"

## make hot-functions: regenerate link/hot-functions.txt, the functions
## serving runs, which build.rs has the linker place side by side (after a
## dependency, version or toolchain change; tests/static/resident.sh says when).
hot-functions: static
	cargo build --locked --release --bin dind-injector
	STATIC_BIN="$(STATIC_BIN)" HOST_BIN="$(CARGO_TARGET_DIR)/release/dind-injector" scripts/hot-functions.sh

# Benches are compiled by `make lint` (clippy --all-targets) and run by `make bench`.
unit:
	cargo test --locked --lib --bins --tests

$(VENV)/.installed:
	python3 -m venv "$(VENV)"
	"$(VENV)/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION)"
	touch "$@"

schema: $(VENV)/.installed
	"$(VENV)/bin/python" tests/schema/validate_golden.py "$(KUBERNETES_SCHEMA_VERSION)" tests/golden
	"$(VENV)/bin/python" tests/schema/validate_golden.py "$(KUBERNETES_SCHEMA_VERSION)" tests/golden/profiles

$(VENV)/.installed-deploy-$(PYTEST_VERSION): $(VENV)/.installed
	"$(VENV)/bin/pip" install --quiet --disable-pip-version-check "pytest==$(PYTEST_VERSION)" pyyaml
	touch "$@"

$(HELM):
	@echo "building helm $(HELM_VERSION) from its Go module (first run only)"
	mkdir -p "$(@D)"
	cd "$(TOOLS_DIR)" && time GOBIN="$(@D)" GOFLAGS=-buildvcs=false go install -ldflags "$(HELM_LDFLAGS)" "helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)"

$(KUSTOMIZE):
	@echo "building kustomize $(KUSTOMIZE_VERSION) from its Go module (first run only)"
	mkdir -p "$(@D)"
	cd "$(TOOLS_DIR)" && time GOBIN="$(@D)" GOFLAGS=-buildvcs=false go install "sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)"

tools: $(HELM) $(KUSTOMIZE)

## make deploy-test: renders the Helm chart (many value sets) and every
## kustomize overlay, validates each object against the strict Kubernetes
## schema and asserts the webhook's safety properties; packages the chart and
## the image and installs them from a local OCI registry (tests/deploy/).
deploy-test: build tools static image-deps $(VENV)/.installed-deploy-$(PYTEST_VERSION)
	HELM="$(HELM)" KUSTOMIZE="$(KUSTOMIZE)" DIND_INJECTOR="$(BIN)" DIND_INJECTOR_STATIC="$(STATIC_BIN)" \
	DOCKER_REGISTRY="$$(command -v docker-registry)" \
	KUBERNETES_SCHEMA_VERSION="$(KUBERNETES_SCHEMA_VERSION)" \
		"$(VENV)/bin/python" -m pytest -p no:cacheprovider -q tests/deploy

# What `make chart` and `make image` write.
DIST ?= dist
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -1)
IMAGE_REF ?= ghcr.io/dind-injector/dind-injector:v$(VERSION)

## make chart: the Helm chart, linted, packaged as $(DIST)/dind-injector-<version>.tgz
## (helm push it to an OCI registry: helm push FILE oci://REGISTRY/charts).
chart: tools
	"$(HELM)" lint --strict manifests/helm/dind-injector
	"$(HELM)" package manifests/helm/dind-injector --destination "$(DIST)"

## make image: the image, from the Dockerfile around the static binary, built
## by buildah (no daemon, nothing pulled), as the docker-archive
## $(DIST)/dind-injector-image.tar tagged $(IMAGE_REF) (docker load, ctr import);
## PUSH=docker://REGISTRY/dind-injector:TAG pushes it too.
image: static image-deps
	scripts/image.sh "$(STATIC_BIN)" "$(DIST)/dind-injector-image.tar" "$(IMAGE_REF)" "$(VERSION)"
image-deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(IMAGE_PACKAGES)"

## make chart-policies: the chart's shipped admission policies (delivery:
## policy), `dind-injector policy` on the chart's default config; make test
## fails when they are stale.
chart-policies: build tools
	scripts/chart-policies.sh "$(HELM)" "$(BIN)"

lint:
	cargo fmt --check
	cargo clippy --locked --all-targets --all-features -- -D warnings

fmt:
	cargo fmt

## make bench: criterion benchmark of the engine, the HTTPS load test against
## a ceiling server, and the lifecycle figures (see docs/performance.md).
bench: bench-engine bench-load bench-lifecycle

## make bench-lifecycle: init, sidecar readiness and memory figures (docs/performance.md).
bench-lifecycle: deps static
	@command -v hyperfine >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine
	benches/lifecycle.sh "$(STATIC_BIN)"

bench-engine:
	cargo bench --locked --bench engine

bench-load:
	benches/load.sh

## make soak: 30 minutes of load at half capacity with certificate
## rotations, hostile bursts and a SIGTERM + restart (benches/soak.sh;
## SOAK_MINUTES=5 for a short one). Not in CI; figures in docs/performance.md.
soak: static
	BIN="$(STATIC_BIN)" benches/soak.sh

## make bench-instructions: instructions per review (callgrind), noise-free.
bench-instructions:
	benches/instructions.sh

## make fuzz: coverage-guided fuzzing with AFL++ (Debian's afl++, on the
## stable toolchain: rustc's SanitizerCoverage feeding AFL++'s runtime), each
## target for FUZZ_SECONDS at nice 19; new crashes are copied to
## fuzz/crashes/TARGET, which `make test` replays with the corpus
## (tests/fuzz_corpus.rs). Not in CI. docs/fuzzing.md says what was found.
FUZZ_TARGETS ?= review pod config annotations inject
FUZZ_SECONDS ?= 600
FUZZ_TARGET_DIR := $(CACHE_DIR)/target-fuzz
FUZZ_BIN := $(FUZZ_TARGET_DIR)/$(STATIC_TARGET)/release/fuzz
FUZZ_OUT := $(CACHE_DIR)/fuzz-out
AFL_RUNTIME := /usr/lib/afl/afl-compiler-rt.o
FUZZ_RUSTFLAGS := -C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=3 \
	-C llvm-args=-sanitizer-coverage-trace-pc-guard -C llvm-args=-sanitizer-coverage-prune-blocks=0 \
	-C debug-assertions -C overflow-checks --cfg fuzzing -C link-arg=$(AFL_RUNTIME)
fuzz-build:
	@$(MAKE) --no-print-directory install-packages PACKAGES=afl++
	cd fuzz && CARGO_TARGET_DIR="$(FUZZ_TARGET_DIR)" RUSTFLAGS="$(FUZZ_RUSTFLAGS)" \
		nice -n 19 cargo build --release --target $(STATIC_TARGET)
fuzz: fuzz-build
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p "$(FUZZ_OUT)/$$t" fuzz/crashes/$$t; \
	  AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_AUTORESUME=1 \
	    nice -n 19 afl-fuzz -V $(FUZZ_SECONDS) -i fuzz/corpus/$$t -o "$(FUZZ_OUT)/$$t" -- "$(FUZZ_BIN)" $$t \
	    > "$(FUZZ_OUT)/$$t.log" 2>&1 || { tail -20 "$(FUZZ_OUT)/$$t.log"; exit 1; }; \
	  grep -E 'execs_done|cycles_done|saved_crashes|saved_hangs|corpus_count|run_time' "$(FUZZ_OUT)/$$t/default/fuzzer_stats" | sed "s/^/$$t: /"; \
	  for c in "$(FUZZ_OUT)/$$t"/default/crashes/id:*; do \
	    if [ -e "$$c" ]; then cp "$$c" fuzz/crashes/$$t/$$(sha256sum "$$c" | cut -c1-16); fi; \
	  done; \
	done; true

clean:
	cargo clean
