# syntax=docker/dockerfile:1
# crmflow: a multi-stage build. The builder compiles the release binary (librdkafka is built from
# source by rdkafka-sys, so it needs a C/C++ toolchain, make, perl and zlib, plus OpenSSL and
# libcurl headers for Kafka TLS/SASL and OAUTHBEARER OIDC); the runtime image is Debian slim with
# the binary, libssl3 and libcurl4 (linked by librdkafka), CA certificates and curl (for
# container healthchecks), run as a non-root user. Migrations and Avro schemas are compiled into
# the binary.
#
#   docker build -t crmflow:local .
#   docker run --rm crmflow:local config check

ARG RUST_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential perl pkg-config zlib1g-dev \
      libssl-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Registry downloads and compiled dependencies live in BuildKit cache mounts, so a rebuild after a
# source change recompiles only the workspace crates.
RUN --mount=type=cache,id=crmflow-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=crmflow-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=crmflow-target,target=/src/target \
    cargo build --release --locked --bin crmflow \
 && install -m 0755 target/release/crmflow /usr/local/bin/crmflow

FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libssl3 libcurl4 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 crmflow \
 && useradd --system --uid 10001 --gid crmflow --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin crmflow \
 && mkdir -p /etc/crmflow
COPY --from=builder /usr/local/bin/crmflow /usr/local/bin/crmflow
# ./crmflow.toml is read when present: mount one at /etc/crmflow/crmflow.toml, or use CRMFLOW_CONFIG.
WORKDIR /etc/crmflow
USER 10001:10001
# Serve /metrics, /healthz and /readyz on every interface of the container.
ENV CRMFLOW_METRICS__LISTEN=0.0.0.0:9464
EXPOSE 9464
ENTRYPOINT ["crmflow"]
CMD ["run"]
