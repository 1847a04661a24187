#!/bin/bash
# Runs the CUDA engine's GPU checks on a lent GPU machine (the `device` tool), from binaries
# built here and carried in .device/gpu:
#   bazel build -c opt --action_env=APEX4_CUDA_ARCHS=90a <targets below>; copy them, their
#   non-system shared libraries and tools/gguf_export.py's tokenizer-only GGUF to .device/gpu.
# The 98 MB model is over one call's 64 MiB, so it travels in two halves (.device/m1/part1,
# .device/m2/part2), copied to /tmp/apex4 by consecutive calls on the same warm machine; m2 also
# holds the gguf-py wheel and pre-tokenized calibration (python3 -m tools.quantizer
# calibration-ids --tokens 2048 --out .device/m2/wikitext2_calib.ids): the machine has no
# llama-cpp-python, so the W4A4 checkpoint is quantized there from token ids.
#   engine/cuda/device_run.sh kernels   # kernel GPU tests
#   engine/cuda/device_run.sh bench     # engine throughput on synthetic shapes
#   engine/cuda/device_run.sh model     # GPU vs CPU engine on SmolLM2 (needs both halves)
#   engine/cuda/device_run.sh served    # SmolLM2 through gRPC on the GPU, after `model` on the
#                                       # same machine (its QuaRot and Atom checkpoints): greedy
#                                       # parity with the CPU server
#                                       # (tools/bench/served_parity.py) and the load benchmark;
#                                       # carries .device/bench (tools/bench/bundle_for_gpu.sh)
#                                       # with a text excerpt (prompts.txt) beside it
# Results go to $OUT (the device tool brings them back).
set -uo pipefail
out=${OUT:-/tmp/apex4_out}
work=/tmp/apex4
mkdir -p "$out" "$work/models"
[ -d .device/gpu ] && cp -r .device/gpu/. "$work/"
[ -f .device/m1/part1 ] && cp .device/m1/part1 "$work/"
[ -f .device/m2/part2 ] && cp .device/m2/part2 .device/m2/*.ids .device/m2/*.whl "$work/"
export LD_LIBRARY_PATH="$work:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

for mode in "$@"; do
  case "$mode" in
    kernels)
      for t in w4a4_linear_test dense_linear_test llama_elementwise_test paged_attention_test; do
        [ -x "$work/$t" ] || continue  # not carried this time
        timeout 300 "$work/$t" > "$out/$t.txt" 2>&1
        echo "$t rc=$?" | tee -a "$out/summary.txt"
        grep -E "FAIL|FATAL|PASSED|FAILED" "$out/$t.txt" | head -15
      done
      if [ -x "$work/paged_attention_benchmark" ]; then
        timeout 200 "$work/paged_attention_benchmark" > "$out/paged_attention_benchmark.txt" 2>&1
        tail -30 "$out/paged_attention_benchmark.txt"
      fi
      ;;
    bench)
      timeout ${BENCH_TIMEOUT:-420} "$work/cuda_engine_benchmark" --tokenizer="$work/tokenizer.gguf" \
        --shapes="${SHAPES:-llama-2-7b,llama-2-70b}" --batches="${BATCHES:-1,16,64}" \
        > "$out/cuda_engine_benchmark.txt" 2>&1
      echo "cuda_engine_benchmark rc=$?" | tee -a "$out/summary.txt"
      cat "$out/cuda_engine_benchmark.txt"
      ;;
    model)
      model="$work/models/SmolLM2-135M-Instruct.Q4_1.gguf"
      cat "$work/part1" "$work/part2" > "$model" || exit 1
      sha256sum "$model" | tee "$out/model_sha256.txt"
      # The quantizer reads GGUF with gguf-py (carried as a wheel: nothing can be fetched there).
      python3 -m pip install -q --no-index --no-deps --target /tmp/site "$work"/gguf-*.whl
      export PYTHONPATH=/tmp/site
      python3 -m tools.quantizer quantize --gguf "$model" --method quarot --granularity g128 \
        --act-clip 1.0 --no-weight-clip-search --calib "$work/wikitext2_calib.ids" \
        --calib-seqs 2 --calib-len 128 --no-eval --out "$work/models/smollm2-quarot.apex4" \
        > "$out/quantize.txt" 2>&1
      echo "quantize rc=$?" | tee -a "$out/summary.txt"
      # The GPU runs Q/K/V and gate/up as one GEMM on one quantized input: one activation clip
      # ratio for all parts (--act-clip 1.0), as for the QuaRot checkpoint above.
      python3 -m tools.quantizer quantize --gguf "$model" --method atom --granularity g128 \
        --act-clip 1.0 --no-weight-clip-search --calib "$work/wikitext2_calib.ids" \
        --calib-seqs 2 --calib-len 128 --no-eval \
        --out "$work/models/smollm2-atom.apex4" > "$out/quantize_atom.txt" 2>&1
      echo "quantize atom rc=$?" | tee -a "$out/summary.txt"
      [ -x "$work/cuda_engine_test" ] || continue  # not carried this time
      APEX4_MODEL="$model" APEX4_TEST_CHECKPOINT="$work/models/smollm2-quarot.apex4" \
        APEX4_TEST_ATOM_CHECKPOINT="$work/models/smollm2-atom.apex4" \
        timeout 400 "$work/cuda_engine_test" > "$out/cuda_engine_test.txt" 2>&1
      echo "cuda_engine_test rc=$?" | tee -a "$out/summary.txt"
      grep -E "^\[|FAIL|OK \]|PASSED" "$out/cuda_engine_test.txt" | head -40
      ;;
    served)
      bench=$PWD/.device/bench
      model="$work/models/SmolLM2-135M-Instruct.Q4_1.gguf"
      checkpoint="$work/models/smollm2-quarot.apex4"
      atom="$work/models/smollm2-atom.apex4"
      server="$bench/apex4_server --max_batch_size=64 --max_queue_size=64"
      cpu="$server --backend=cpu --threads=16"
      gpu="$server --backend=cuda --profile=/tmp/apex4_profile.json"
      # BF16 must match the CPU FP32 server token for token; FP8 and W4A4 are reported (W4A4
      # against the CPU server on the same checkpoint).
      for pair in "bf16|--model=$model|--model=$model --gpu_weights=bf16|32" \
                  "fp8|--model=$model|--model=$model --gpu_weights=fp8|0" \
                  "w4a4|--model=$checkpoint|--model=$checkpoint|0" \
                  "atom|--model=$atom|--model=$atom|0"; do
        IFS='|' read -r name ref cand need <<< "$pair"
        timeout 300 python3 tools/bench/served_parity.py --grpcurl="$bench/grpcurl" \
          --text_file="$bench/prompts.txt" --prompts=8 --max_tokens=32 --require_identical="$need" \
          --reference_cmd="$cpu $ref" --candidate_cmd="$gpu $cand" --json="$out/parity_$name.json" \
          > "$out/parity_$name.txt" 2>&1
        echo "served parity $name rc=$?" | tee -a "$out/summary.txt"
        tail -1 "$out/parity_$name.txt"
      done
      for pair in "bf16|--model=$model --gpu_weights=bf16" "fp8|--model=$model --gpu_weights=fp8" \
                  "w4a4|--model=$checkpoint" "atom|--model=$atom"; do
        IFS='|' read -r name flags <<< "$pair"
        timeout 200 python3 tools/bench/load_benchmark.py --grpcurl="$bench/grpcurl" \
          --server_cmd="$gpu $flags" --concurrency=1,16,64 --prompt_tokens=128 --max_tokens=64 \
          --duration_s=10 --json="$out/served_smollm2_$name.json" \
          --markdown="$out/served_smollm2_$name.md" > /dev/null 2>&1
        echo "served load $name rc=$?" | tee -a "$out/summary.txt"
        cat "$out/served_smollm2_$name.md"
      done
      ;;
  esac
done
