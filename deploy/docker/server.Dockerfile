# syntax=docker/dockerfile:1.7
# apex4_server for NVIDIA GPU nodes. Build from the repository root (BuildKit reads the ignore
# file beside this one, server.Dockerfile.dockerignore):
#
#   docker build -f deploy/docker/server.Dockerfile -t apex4-server:dev .
#   docker build -f deploy/docker/server.Dockerfile --build-arg CUDA_ARCHS=90a -t apex4-server:sm90a .
#
# Base: Debian 12 for both stages, not nvidia/cuda:*-ubuntu24.04. The offline Bazel build is
# verified against Debian 12's own packages (Bazel 4.2.3, gRPC 1.51, Protobuf 3.21, Abseil
# 20220623, prometheus-cpp 1.0), and the runtime stage installs the runtime halves of those same
# packages, so the binary's libraries match by construction. The CUDA toolkit and libraries come
# from NVIDIA's Debian 12 repository, the same packages the nvidia/cuda images are made of.
# Pin the bases by digest in CI (--build-arg DEBIAN_IMAGE=debian:12@sha256:...).
ARG DEBIAN_IMAGE=debian:12
ARG DEBIAN_SLIM_IMAGE=debian:12-slim
ARG GO_IMAGE=golang:1.26-bookworm

# ---- grpc_health_probe, a static binary for the image's HEALTHCHECK ----
FROM ${GO_IMAGE} AS health-probe
ARG GRPC_HEALTH_PROBE_VERSION=v0.4.62
RUN CGO_ENABLED=0 GOBIN=/out go install \
      "github.com/grpc-ecosystem/grpc-health-probe@${GRPC_HEALTH_PROBE_VERSION}"

# ---- builder: the repository's own Bazel build, with CUDA: the server links the CUDA engine
# (engine/cuda, kernels/cuda; cudart statically, cuBLAS/cuBLASLt from NVIDIA's packages) ----
FROM ${DEBIAN_IMAGE} AS builder
# NVIDIA package suffix of the toolkit: 13-0 is CUDA 13.0.
ARG CUDA_PKG_VERSION=13-0
# Compute capabilities to compile for, space-separated: A100 80, A10/A40 86, L40S/L4 89, H100 90a.
ARG CUDA_ARCHS="80 86 89 90a"
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# NVIDIA's signing key and the apt source of its Debian 12 CUDA repository.
ADD https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb /tmp/cuda-keyring.deb
COPY deploy/docker/install-build-deps deploy/docker/runtime-packages /usr/local/bin/
RUN install-build-deps "${CUDA_PKG_VERSION}"
WORKDIR /src
COPY . .
# third_party/cuda.bzl reads APEX4_CUDA_ARCHS; bazel-bin lives in the cache mount, so the binary
# is copied out in the same step; --batch leaves no Bazel server running in the layer.
RUN --mount=type=cache,target=/root/.cache/bazel \
    bazel --batch build -c opt --action_env=APEX4_CUDA_ARCHS="${CUDA_ARCHS}" //server:apex4_server \
    && install -D -m 0755 bazel-bin/server/apex4_server /out/usr/local/bin/apex4_server \
    && runtime-packages /out/usr/local/bin/apex4_server > /out/runtime-packages.txt \
    && echo "libcublas-${CUDA_PKG_VERSION}" >> /out/runtime-packages.txt \
    && cp /tmp/cuda-keyring.deb /out/cuda-keyring.deb

# ---- runtime: the binary, the packages of its libraries, a non-root user ----
FROM ${DEBIAN_SLIM_IMAGE} AS runtime
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
COPY --from=builder /out/runtime-packages.txt /out/cuda-keyring.deb /tmp/
# Package versions come from the pinned base image's Debian 12 point release and from NVIDIA's
# repository for the toolkit version the builder used; the list is what the binary links, plus
# cuBLAS, which it opens with dlopen (third_party/cublas_loader.cc) and finds through ld.so.cache.
# hadolint ignore=DL3008
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && dpkg -i /tmp/cuda-keyring.deb \
    && apt-get update \
    && xargs apt-get install -y --no-install-recommends < /tmp/runtime-packages.txt \
    && for lib in /usr/local/cuda-*/targets/x86_64-linux/lib; do [ ! -d "$lib" ] || echo "$lib"; done \
         > /etc/ld.so.conf.d/apex4-cuda.conf \
    && ldconfig \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt /tmp/cuda-keyring.deb \
    && groupadd --system --gid 10001 apex4 \
    && useradd --system --uid 10001 --gid apex4 --no-create-home --home-dir /nonexistent \
         --shell /usr/sbin/nologin apex4
COPY --from=builder /out/usr/local/bin/apex4_server /usr/local/bin/apex4_server
COPY --from=health-probe /out/grpc-health-probe /usr/local/bin/grpc_health_probe
# Every library resolves here, apart from the driver's, which the NVIDIA runtime mounts; cuBLAS
# (opened at run time) is in the ld.so cache through the entry written above.
RUN ! ldd /usr/local/bin/apex4_server | grep 'not found' | grep -v -e libcuda -e libnvidia- \
    && ldconfig -p | grep -q 'libcublasLt\.so\.' && ldconfig -p | grep -q 'libcublas\.so\.'

# What the NVIDIA container runtime reads to mount the driver into the container.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
# gRPC (API + grpc.health.v1) and Prometheus /metrics: the defaults of --grpc_port, --metrics_port.
EXPOSE 50051 9090
# Docker and Compose only; Kubernetes uses its native gRPC probes (deploy/k8s).
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
  CMD ["/usr/local/bin/grpc_health_probe", "-addr=127.0.0.1:50051", "-connect-timeout=2s", "-rpc-timeout=3s"]
ENTRYPOINT ["/usr/local/bin/apex4_server"]
