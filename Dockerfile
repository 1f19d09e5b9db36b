# syntax=docker/dockerfile:1
#
# regie's container image.
#
#   docker build -t regie .
#   docker run --rm -p 8080:8080 -e REGIE_ADMIN_TOKEN=… -e REGIE_REDIS_URL=redis://redis:6379/0 regie
#
# Two stages: a builder that compiles the dependencies in a layer of their own (rebuilt only
# when Cargo.toml or Cargo.lock change), then the crate; and a slim runtime with the binary,
# its configuration and static files, run as a non-root user.

# The builder's Debian release must be the runtime's (glibc of the same age or older).
ARG RUST_IMAGE=rust:1.95-slim-bookworm

FROM ${RUST_IMAGE} AS builder
WORKDIR /app

# 1. Dependencies only: the real manifests with stub sources. Every target that Cargo.toml
#    declares explicitly must exist (the `selection` bench), or cargo refuses the manifest.
#    The stub crate's own artefacts are then deleted, so that step 2 rebuilds the crate
#    whatever the copied files' modification times.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && : > src/lib.rs \
    && echo 'fn main() {}' > benches/selection.rs \
    && cargo build --release --locked --bin regie \
    && rm -rf src benches \
        target/release/regie target/release/regie.d \
        target/release/.fingerprint/regie-* \
        target/release/deps/regie-* target/release/deps/libregie-*

# 2. The crate. config/ and static/ come first in case the sources embed files from them.
COPY config ./config
COPY static ./static
COPY benches ./benches
COPY src ./src
RUN cargo build --release --locked --bin regie \
    && strip target/release/regie

FROM debian:bookworm-slim AS runtime

# ca-certificates: for a TLS Redis (rediss://) or any outbound HTTPS the deployment adds.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system regie \
    && useradd --system --gid regie --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin regie

WORKDIR /app
COPY --from=builder /app/target/release/regie /usr/local/bin/regie
# Owned by root and read-only for the service: it reads its configuration, never writes it.
COPY config ./config
COPY static ./static

ENV REGIE_LISTEN=0.0.0.0:8080 \
    REGIE_ENVIRONMENT=production

USER regie
EXPOSE 8080

# `regie healthcheck` GETs http://127.0.0.1:8080/healthz and exits 0 or 1: the slim image has
# neither curl nor wget, and the binary is there anyway.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["regie", "healthcheck"]

CMD ["regie"]
