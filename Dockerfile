# syntax=docker/dockerfile:1
# Vigil's container images, built from one builder stage:
#   docker build --target operator -t ghcr.io/vigil-nvr/vigil-operator:0.1.0 .
#   docker build --target recorder -t ghcr.io/vigil-nvr/vigil-recorder:0.1.0 .
# The runtime image is distroless/cc (glibc, libgcc_s, CA certificates; no shell, no package
# manager) running as the non-root user 65532. The builder is Debian 12 (bookworm) like the
# runtime, so the binaries never need a newer glibc than the one they run with.
# Needs BuildKit (the default builder of Docker >= 23) for the cache mounts.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# The whole workspace (every member's manifest must be there for --locked); .dockerignore keeps
# target/, .git and the like out of the context.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY operator ./operator
COPY recorder ./recorder
COPY e2e/Cargo.toml ./e2e/Cargo.toml
COPY e2e/src ./e2e/src
# Registry and target caches survive between builds on the same builder; the binaries are copied
# out of the cache mount in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p vigil-operator -p vigil-recorder -p vigil-jobs -p vigil-access \
 && mkdir -p /out \
 && cp target/release/vigil-operator target/release/vigil-recorder target/release/vigil-jobs \
       target/release/vigil-access /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime-base
LABEL org.opencontainers.image.source="https://github.com/vigil-nvr/vigil" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Vigil"
USER 65532:65532
WORKDIR /

# The data path: `vigil-recorder record` in recorder pods (the entrypoint), `vigil-jobs` in
# backfill Jobs and the audit/retention CronJobs, `vigil-access serve` for the access point.
FROM runtime-base AS recorder
LABEL org.opencontainers.image.title="vigil-recorder" \
      org.opencontainers.image.description="Vigil recorder: RTSP ingest into fMP4 segments in object storage, backfill Jobs, playback."
COPY --from=builder /out/vigil-recorder /out/vigil-jobs /out/vigil-access /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/vigil-recorder"]

# The operator (also the admission webhook: `vigil-operator webhook`). Last, so a plain
# `docker build .` gives the operator.
FROM runtime-base AS operator
LABEL org.opencontainers.image.title="vigil-operator" \
      org.opencontainers.image.description="Vigil operator: camera placement, recorder failover, backfill; admission webhook."
COPY --from=builder /out/vigil-operator /usr/local/bin/vigil-operator
ENTRYPOINT ["/usr/local/bin/vigil-operator"]
CMD ["run"]
