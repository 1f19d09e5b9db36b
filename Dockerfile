# syntax=docker/dockerfile:1
#
# regie's container image.
#
#   docker build -t regie .
#   docker run --rm -p 8080:8080 -e REGIE_ADMIN_TOKEN=… -e REGIE_PUBLIC_URL=https://ads.example \
#       -e REGIE_REDIS_URL=redis://redis:6379/0 regie
#
# The binary is self-contained: every setting's default, the demo inventory, the pages and the
# demo creatives are compiled in, so the runtime holds the binary and nothing else. Settings
# come from REGIE_… variables; a configuration directory can still be mounted and named with
# REGIE_CONFIG_DIR, and an inventory file with REGIE_INVENTORY.
#
# Two stages: a builder that compiles the dependencies in a layer of their own (rebuilt only
# when Cargo.toml or Cargo.lock change), then the crate; and a slim runtime, run as a non-root
# user.

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

# 2. The crate, with the files it compiles in (config/ and static/).
COPY config ./config
COPY static ./static
COPY benches ./benches
COPY src ./src
RUN cargo build --release --locked --bin regie \
    && strip target/release/regie

# The binary needs glibc and libgcc only (no TLS: nothing to verify, so no CA bundle).
FROM debian:bookworm-slim AS runtime

RUN useradd --system --user-group --no-create-home --shell /usr/sbin/nologin regie

COPY --from=builder /app/target/release/regie /usr/local/bin/regie

# Production settings: JSON logs, listening on 0.0.0.0:8080, a drain delay on SIGTERM. No
# admin token is ever made up there: without REGIE_ADMIN_TOKEN the admin API stays closed.
ENV REGIE_ENVIRONMENT=production

USER regie
# No config/ under / : the compiled-in defaults and the environment apply.
WORKDIR /
EXPOSE 8080

# `regie healthcheck` GETs http://127.0.0.1:8080/healthz and exits 0 or 1: the slim image has
# neither curl nor wget, and the binary is there anyway.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["regie", "healthcheck"]

CMD ["regie"]
