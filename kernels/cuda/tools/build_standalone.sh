#!/bin/bash
# Builds the GPU test and benchmark with plain nvcc (no Bazel, no Abseil): for the GPU machine,
# which has neither. Usage (from the repository root): kernels/cuda/tools/build_standalone.sh OUTDIR
set -euo pipefail
out=${1:?output directory}
mkdir -p "$out/obj"
nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}
common=(-std=c++17 -O3 -I. -Ikernels/cuda/tools/absl_shim)
device=(-gencode=arch=compute_90a,code=sm_90a -lineinfo -Xptxas -warn-spills)
pids=()
for cu in kernels/cuda/sm90/sm90_w4a4_gemm.cu kernels/cuda/sm80/sm80_w4a4_gemm.cu \
          kernels/cuda/quant/w4a4_quantize_activations.cu; do
  "$nvcc" "${common[@]}" "${device[@]}" -Xptxas -v -c "$cu" -o "$out/obj/$(basename "$cu" .cu).o" \
      > "$out/obj/$(basename "$cu" .cu).ptxas.txt" 2>&1 & pids+=($!)
done
for cc in kernels/cuda/w4a4_linear.cc kernels/cuda/sm90/sm90_w4a4_prepack.cc \
          kernels/cpu/w4a4_reference.cc kernels/cuda/w4a4_linear_test.cc \
          kernels/cuda/w4a4_linear_benchmark.cc; do
  "$nvcc" "${common[@]}" -x c++ -c "$cc" -o "$out/obj/$(basename "$cc" .cc).o" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
lib=("$out"/obj/sm90_w4a4_gemm.o "$out"/obj/sm80_w4a4_gemm.o "$out"/obj/w4a4_quantize_activations.o
     "$out"/obj/w4a4_linear.o "$out"/obj/sm90_w4a4_prepack.o)
"$nvcc" "${device[@]}" -o "$out/w4a4_linear_test" "$out/obj/w4a4_linear_test.o" "$out/obj/w4a4_reference.o" "${lib[@]}"
"$nvcc" "${device[@]}" -o "$out/w4a4_linear_benchmark" "$out/obj/w4a4_linear_benchmark.o" "${lib[@]}" \
    -lcublasLt -lcublas
