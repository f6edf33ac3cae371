# syntax=docker/dockerfile:1
#
# Images of gaze: `build` compiles gaze-worker and gaze with CUDA on the
# CUDA devel image, `runtime` carries both binaries on the smaller CUDA
# runtime image.
#
#   docker build --target runtime -t gaze:latest .
#   docker build --build-arg CUDA_COMPUTE_CAP=80 -t gaze:a100 .
#
# NOTE: not built in the repository's CI (no Docker engine, no GPU). The
# CUDA and Rust versions below are defaults to check on the first build.

ARG CUDA_VERSION=12.4.1
ARG UBUNTU_VERSION=22.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS build

ARG RUST_VERSION=1.88.0
# candle compiles its CUDA kernels for one compute capability and cannot
# query a GPU during `docker build`: 90 for H100 and H200, 80 for A100,
# 89 for L4 and L40S.
ARG CUDA_COMPUTE_CAP=90

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl build-essential pkg-config \
    && rm -rf /var/lib/apt/lists/*

ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH \
    CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP}
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain "${RUST_VERSION}"

WORKDIR /src
COPY . .

# The caches keep downloaded crates and compiled dependencies between
# builds; the binaries are copied out of the cached target folder.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gaze-worker -p gaze-coordinator --features cuda \
    && install -m 0755 target/release/gaze-worker target/release/gaze /usr/local/bin/

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS runtime

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home gaze

COPY --from=build /usr/local/bin/gaze-worker /usr/local/bin/gaze /usr/local/bin/

USER gaze
# Prometheus metrics of gaze-worker serve, when GAZE_METRICS_ADDR is set.
EXPOSE 9464
CMD ["gaze-worker", "--help"]
