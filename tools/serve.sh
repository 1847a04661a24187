#!/usr/bin/env bash
# Quick start: set up this machine, then serve the default model (gRPC on :50051, metrics on :9090).
# Extra arguments go to the server, e.g. tools/serve.sh --grpc_port=6000.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
exec bazel-bin/server/apex4_server --model=models/SmolLM2-135M-Instruct.Q4_1.gguf "$@"
