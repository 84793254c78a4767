# syntax=docker/dockerfile:1
#
# dind-injector image: one static binary, used by the webhook Deployment
# (`dind-injector serve`) and by the injected `dind-injector-init` container
# (`/usr/local/bin/dind-injector init ...`), so the binary must stay at
# /usr/local/bin/dind-injector.
#
#   docker build -t ghcr.io/dind-injector/dind-injector:v0.1.0 .
#
# The builder does what `make static` does: a glibc build with the C runtime
# linked in statically (ring compiles C, so musl is not used).

ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# benches/ only because Cargo.toml declares the `engine` bench target.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
ENV CARGO_TARGET_DIR=/src/target \
    RUSTFLAGS="-C target-feature=+crt-static"
# Cache mounts keep the registry and the target directory between builds;
# a static binary has no program interpreter: refuse to ship anything else.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-gnu \
 && install -D -m 0755 target/x86_64-unknown-linux-gnu/release/dind-injector /out/dind-injector \
 && ! readelf -l /out/dind-injector | grep -q 'Requesting program interpreter' \
 && /out/dind-injector --version

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="dind-injector" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook: Docker-in-Docker sidecar and lifecycle for CI runner pods" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /out/dind-injector /usr/local/bin/dind-injector
# The nonroot uid/gid of distroless; the chart and the engine run it as 65532.
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/dind-injector"]
CMD ["serve"]
