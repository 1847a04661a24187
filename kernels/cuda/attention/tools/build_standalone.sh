#!/bin/bash
# Builds the attention GPU test and benchmark with plain nvcc (no Bazel, no Abseil), for a GPU
# machine without Bazel. Usage (from the repository root):
#   kernels/cuda/attention/tools/build_standalone.sh OUTDIR
# then OUTDIR/paged_attention_test and OUTDIR/paged_attention_benchmark. OUTDIR/obj/*.ptxas.txt
# hold the ptxas resource reports (sm_90a; set ARCHS="80 86 89 90a" for every shipped one).
set -euo pipefail
out=${1:?output directory}
mkdir -p "$out/obj"
nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}
gencode=()
for a in ${ARCHS:-90a}; do gencode+=("-gencode=arch=compute_$a,code=sm_$a"); done
common=(-std=c++17 -O3 -I.)
dir=kernels/cuda/attention
pids=()
for cu in $dir/paged_attention_kernels.cu $dir/rope_write_kv.cu; do
  "$nvcc" "${common[@]}" "${gencode[@]}" -lineinfo -Xptxas -warn-spills -Xptxas -v -c "$cu" \
      -o "$out/obj/$(basename "$cu" .cu).o" > "$out/obj/$(basename "$cu" .cu).ptxas.txt" 2>&1 & pids+=($!)
done
for cc in $dir/paged_attention.cc $dir/testing/attention_case.cc $dir/paged_attention_test.cc \
          $dir/paged_attention_benchmark.cc; do
  "$nvcc" "${common[@]}" -x c++ -c "$cc" -o "$out/obj/$(basename "$cc" .cc).o" & pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
if [ $status -ne 0 ]; then cat "$out/obj/paged_attention_kernels.ptxas.txt" "$out/obj/rope_write_kv.ptxas.txt"; exit 1; fi
lib=("$out/obj/paged_attention.o" "$out/obj/paged_attention_kernels.o" "$out/obj/rope_write_kv.o")
"$nvcc" "${gencode[@]}" -o "$out/paged_attention_test" "$out/obj/paged_attention_test.o" \
    "$out/obj/attention_case.o" "${lib[@]}"
"$nvcc" "${gencode[@]}" -o "$out/paged_attention_benchmark" "$out/obj/paged_attention_benchmark.o" "${lib[@]}"
grep -h "spill" "$out/obj/paged_attention_kernels.ptxas.txt" "$out/obj/rope_write_kv.ptxas.txt" | sort | uniq -c
