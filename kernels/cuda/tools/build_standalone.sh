#!/bin/bash
# Builds the GPU tests and the benchmark with plain nvcc (no Bazel, no Abseil): for the GPU machine,
# which has neither. Usage (from the repository root): kernels/cuda/tools/build_standalone.sh OUTDIR
set -euo pipefail
out=${1:?output directory}
mkdir -p "$out/obj"
nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}
common=(-std=c++17 -O3 -I. -Ikernels/cuda/tools/absl_shim)
device=(-gencode=arch=compute_90a,code=sm_90a -lineinfo -Xptxas -warn-spills)
pids=()
for cu in kernels/cuda/sm90/sm90_w4a4_gemm.cu kernels/cuda/sm80/sm80_w4a4_gemm.cu \
          kernels/cuda/quant/w4a4_quantize_activations.cu kernels/cuda/ops/llama_elementwise.cu; do
  "$nvcc" "${common[@]}" "${device[@]}" -Xptxas -v -c "$cu" -o "$out/obj/$(basename "$cu" .cu).o" \
      > "$out/obj/$(basename "$cu" .cu).ptxas.txt" 2>&1 & pids+=($!)
done
for cc in kernels/cuda/w4a4_linear.cc kernels/cuda/sm90/sm90_w4a4_prepack.cc \
          kernels/cpu/w4a4_reference.cc kernels/cpu/hadamard_transform.cc kernels/cpu/cpu_isa.cc \
          engine/llama_ops.cc kernels/cuda/dense/dense_linear.cc kernels/cuda/w4a4_linear_test.cc \
          kernels/cuda/w4a4_linear_benchmark.cc kernels/cuda/dense/dense_linear_test.cc \
          kernels/cuda/ops/llama_elementwise_test.cc; do
  "$nvcc" "${common[@]}" -x c++ -c "$cc" -o "$out/obj/$(basename "$cc" .cc).o" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
o=$out/obj
lib=("$o"/sm90_w4a4_gemm.o "$o"/sm80_w4a4_gemm.o "$o"/w4a4_quantize_activations.o
     "$o"/w4a4_linear.o "$o"/sm90_w4a4_prepack.o)
"$nvcc" "${device[@]}" -o "$out/w4a4_linear_test" "$o/w4a4_linear_test.o" "$o/w4a4_reference.o" \
    "$o/hadamard_transform.o" "$o/cpu_isa.o" "$o/llama_ops.o" "$o/llama_elementwise.o" "${lib[@]}"
"$nvcc" "${device[@]}" -o "$out/w4a4_linear_benchmark" "$o/w4a4_linear_benchmark.o" "$o/dense_linear.o" \
    "${lib[@]}" -lcublasLt -lcublas
"$nvcc" "${device[@]}" -o "$out/dense_linear_test" "$o/dense_linear_test.o" "$o/dense_linear.o" \
    -lcublasLt -lcublas
"$nvcc" "${device[@]}" -o "$out/llama_elementwise_test" "$o/llama_elementwise_test.o" \
    "$o/llama_elementwise.o" "$o/llama_ops.o"
