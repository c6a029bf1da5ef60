# syntax=docker/dockerfile:1
# Vigil's container images, built from one builder stage:
#   docker build --target operator -t ghcr.io/vigil-nvr/vigil-operator:0.1.0 .
#   docker build --target recorder -t ghcr.io/vigil-nvr/vigil-recorder:0.1.0 .
#   docker build --target rendezvous -t ghcr.io/vigil-nvr/vigil-rendezvous:0.1.0 .
#   docker build --target gateway -t ghcr.io/vigil-nvr/vigil-gateway:0.1.0 .
# The gateway (remote sites, docs/sites.md) is linked statically and runs from distroless/static;
# `docker buildx build --platform linux/arm64 --target gateway` gives the Raspberry Pi's.
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
COPY site ./site
COPY vendor ./vendor
COPY e2e/Cargo.toml ./e2e/Cargo.toml
COPY e2e/src ./e2e/src
# Registry and target caches survive between builds on the same builder; the binaries are copied
# out of the cache mount in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p vigil-operator -p vigil-recorder -p vigil-jobs -p vigil-access \
      -p vigil-site \
 && mkdir -p /out \
 && cp target/release/vigil-operator target/release/vigil-recorder target/release/vigil-jobs \
       target/release/vigil-access target/release/vigil-rendezvous /out/
# The gateway statically linked (glibc static-pie): built for the explicit host target so the flag
# stays off build scripts and proc-macros.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    host=$(rustc -vV | sed -n 's/^host: //p') \
 && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -p vigil-site \
      --bin vigil-gateway --target "$host" \
 && cp "target/$host/release/vigil-gateway" /out/vigil-gateway

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

# The rendezvous and relay service for remote sites (the chart's `rendezvous.enabled`).
FROM runtime-base AS rendezvous
LABEL org.opencontainers.image.title="vigil-rendezvous" \
      org.opencontainers.image.description="Vigil rendezvous and relay service: remote-site gateways and recorders meet here."
COPY --from=builder /out/vigil-rendezvous /usr/local/bin/vigil-rendezvous
ENTRYPOINT ["/usr/local/bin/vigil-rendezvous"]

# The site gateway: one static binary, no library (distroless/static: CA certificates, the
# nonroot user, no libc).
FROM gcr.io/distroless/static-debian12:nonroot AS gateway
LABEL org.opencontainers.image.source="https://github.com/vigil-nvr/vigil" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Vigil" \
      org.opencontainers.image.title="vigil-gateway" \
      org.opencontainers.image.description="Vigil site gateway: dials out to the cluster's rendezvous service and opens connections to the site's cameras for recorders."
COPY --from=builder /out/vigil-gateway /usr/local/bin/vigil-gateway
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/vigil-gateway"]

# The operator (also the admission webhook: `vigil-operator webhook`). Last, so a plain
# `docker build .` gives the operator.
FROM runtime-base AS operator
LABEL org.opencontainers.image.title="vigil-operator" \
      org.opencontainers.image.description="Vigil operator: camera placement, recorder failover, backfill; admission webhook."
COPY --from=builder /out/vigil-operator /usr/local/bin/vigil-operator
ENTRYPOINT ["/usr/local/bin/vigil-operator"]
CMD ["run"]
