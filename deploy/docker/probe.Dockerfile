# syntax=docker/dockerfile:1.7
# apex4_probe and the init container script that keeps the node's ρ profiles (deploy/k8s: the
# apex4-profile init container). Build from the repository root (BuildKit reads the ignore file
# beside this one, probe.Dockerfile.dockerignore):
#
#   docker build -f deploy/docker/probe.Dockerfile -t apex4-probe:dev .
#
# Same bases and builder as server.Dockerfile (see there for why Debian 12).
ARG DEBIAN_IMAGE=debian:12
ARG DEBIAN_SLIM_IMAGE=debian:12-slim

# ---- builder: the repository's own Bazel build, with CUDA ----
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
RUN --mount=type=cache,target=/root/.cache/bazel \
    bazel --batch build -c opt --action_env=APEX4_CUDA_ARCHS="${CUDA_ARCHS}" //tools/probe:apex4_probe \
    && install -D -m 0755 bazel-bin/tools/probe/apex4_probe /out/usr/local/bin/apex4_probe \
    && runtime-packages /out/usr/local/bin/apex4_probe > /out/runtime-packages.txt \
    && cp /tmp/cuda-keyring.deb /out/cuda-keyring.deb

# ---- runtime: the probe, the packages of its libraries, the init script, a non-root user ----
FROM ${DEBIAN_SLIM_IMAGE} AS runtime
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
COPY --from=builder /out/runtime-packages.txt /out/cuda-keyring.deb /tmp/
# Package versions come from the pinned base image's Debian 12 point release and from NVIDIA's
# repository for the toolkit version the builder used; the list is what the binary links.
# hadolint ignore=DL3008
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && dpkg -i /tmp/cuda-keyring.deb \
    && apt-get update \
    && xargs apt-get install -y --no-install-recommends < /tmp/runtime-packages.txt \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt /tmp/cuda-keyring.deb \
    && groupadd --system --gid 10001 apex4 \
    && useradd --system --uid 10001 --gid apex4 --no-create-home --home-dir /nonexistent \
         --shell /usr/sbin/nologin apex4
COPY --from=builder /out/usr/local/bin/apex4_probe /usr/local/bin/apex4_probe
COPY deploy/docker/apex4-profile-init /usr/local/bin/apex4-profile-init
# Every library resolves here, apart from the driver's, which the NVIDIA runtime mounts.
RUN ! ldd /usr/local/bin/apex4_probe | grep 'not found' | grep -v -e libcuda -e libnvidia-

# "utility" makes the NVIDIA runtime mount nvidia-smi, which the init script asks for the UUID.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/apex4-profile-init"]
