# syntax=docker/dockerfile:1
#
# dind-injector image: one static binary, used by the webhook Deployment
# (`dind-injector serve`) and by the injected `dind-injector-init` container
# (`/usr/local/bin/dind-injector init ...`), so the binary must stay at
# /usr/local/bin/dind-injector.
#
#   make image     # `make static`, then this file built by buildah: no daemon,
#                  # nothing pulled; writes dist/dind-injector-image.tar
#
# The build context is a directory holding only the binary `make static`
# builds (glibc with the C runtime linked in statically: ring compiles C, so
# musl is not used; checked to have no program interpreter). Any builder
# works the same way, e.g. `docker build -f Dockerfile DIR`: a scratch image
# needs no base image to pull.

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="dind-injector" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook: Docker-in-Docker sidecar and lifecycle for CI runner pods" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY dind-injector /usr/local/bin/dind-injector
# The nonroot uid/gid of distroless; the chart and the engine run it as 65532.
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/dind-injector"]
CMD ["serve"]
