# gdq: the worker and the CLI in one small image.
#
#   docker build -t gdq .
#   docker run --rm -e AWS_REGION=… -e GDQ_WAREHOUSE=s3://… gdq worker --queue-url …
#
# Build stage: the pinned toolchain (rust-toolchain.toml) on Debian bookworm; the release
# profile strips the binary. Runtime stage: Debian bookworm slim (the same glibc the binary
# was linked against) with CA certificates for TLS to AWS, and an unprivileged user.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY rust-toolchain.toml Cargo.toml Cargo.lock ./
COPY schemas schemas
COPY aws aws
COPY table table
COPY ingest ingest
COPY query query
COPY setup setup
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin gdq \
 && cp target/release/gdq /usr/local/bin/gdq

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/gdq --create-home gdq
COPY --from=build /usr/local/bin/gdq /usr/local/bin/gdq
USER gdq
WORKDIR /var/lib/gdq
ENV GDQ_WAREHOUSE=/var/lib/gdq/warehouse
ENTRYPOINT ["/usr/local/bin/gdq"]
CMD ["--help"]
