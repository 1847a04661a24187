#!/bin/bash
# One call on the GPU machine: tests, then benchmark, results under $OUT. Uses binaries built
# here by build_standalone.sh and carried in .device/bin; rebuilds with the machine's nvcc when
# they cannot load. Usage: kernels/cuda/tools/device_run.sh [benchmark M ...]
set -uo pipefail
out=${OUT:-/tmp/apex4_out}
bin=${BIN:-.device/bin}
mkdir -p "$out"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
if [ ! -x "$bin/w4a4_linear_test" ] || [ ! -x "$bin/llama_elementwise_test" ] ||
   ldd "$bin/w4a4_linear_benchmark" | grep -q "not found" || ldd "$bin/dense_linear_test" | grep -q "not found"; then
  echo "rebuilding on the device"
  bin=/tmp/apex4_bin
  NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc) kernels/cuda/tools/build_standalone.sh "$bin" || exit 1
fi
timeout ${TEST_TIMEOUT:-240} "$bin/w4a4_linear_test" > "$out/test.txt" 2>&1
echo "test rc=$?" | tee -a "$out/test.txt"
grep -E "FAIL|PASSED|FAILED|FATAL" "$out/test.txt" | head -40
for t in dense_linear_test llama_elementwise_test; do
  timeout ${TEST_TIMEOUT:-240} "$bin/$t" > "$out/$t.txt" 2>&1
  echo "$t rc=$?" | tee -a "$out/$t.txt"
  grep -E "FAIL|PASSED|FAILED|FATAL|skipped" "$out/$t.txt" | head -40
done
timeout ${BENCH_TIMEOUT:-300} "$bin/w4a4_linear_benchmark" "$@" > "$out/bench.txt" 2>&1
echo "bench rc=$?" >> "$out/bench.txt"
cat "$out/bench.txt"
