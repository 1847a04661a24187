#!/usr/bin/env bash
# Reproduces tools/quantizer/RESULTS.md: quantizes SmolLM2-135M with each method into models/
# and evaluates every row on the same subsets. Run from the repository root:
#   bash tools/quantizer/experiments.sh [quantize|eval|all]
# Results land in models/results/<row>.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
GGUF=models/SmolLM2-135M-Instruct.Q4_1.gguf
OUT=models/results
WINDOWS=${PPL_WINDOWS:-4}
FULL=(--ppl-windows "$WINDOWS" --hellaswag-tasks "${HS_TASKS:-100}")
PPL=(--ppl-windows "$WINDOWS" --hellaswag-tasks 0)
Q="python3 -m tools.quantizer"
mkdir -p "$OUT"

# RTN-based methods use calibration only for clip ratios, outlier channels and sensitivity: 4
# sequences suffice; GPTQ's Hessians get 16 (its default). The four run in parallel.
quantize() {
  $Q quantize --gguf $GGUF --method rtn --act-clip 1.0 --no-weight-clip-search --calib-seqs 4 \
    --no-eval --out models/smollm2-rtn.apex4 &
  $Q quantize --gguf $GGUF --method atom --calib-seqs 4 --no-eval \
    --out models/smollm2-atom.apex4 &
  $Q quantize --gguf $GGUF --method quarot --calib-seqs 4 --no-eval \
    --out models/smollm2-quarot-rtn.apex4 &
  $Q quantize --gguf $GGUF --method quarot --gptq --no-eval \
    --out models/smollm2-quarot-gptq.apex4 &
  wait
  $Q quantize --gguf $GGUF --method atom --gptq --no-eval --out models/smollm2-atom-gptq.apex4
}

# Every row evaluates the same subsets; on the shared 2-core machine HellaSwag (the slow part)
# runs only for the rows that bear on the target (FULL), the others measure perplexity (PPL).
evaluate() {
  local ck=models/smollm2-quarot-gptq.apex4
  $Q eval --gguf $GGUF "${FULL[@]}" --json $OUT/fp32.json
  $Q eval --checkpoint models/smollm2-rtn.apex4 --granularity per_channel "${FULL[@]}" \
    --json $OUT/rtn_pc.json
  $Q eval --checkpoint models/smollm2-rtn.apex4 --granularity g128 "${PPL[@]}" \
    --json $OUT/rtn_g128.json
  $Q eval --checkpoint models/smollm2-atom.apex4 --granularity g128 "${PPL[@]}" \
    --json $OUT/atom_g128.json
  $Q eval --checkpoint models/smollm2-atom-gptq.apex4 --granularity g128 "${FULL[@]}" \
    --json $OUT/atom_gptq_g128.json
  $Q eval --checkpoint models/smollm2-quarot-rtn.apex4 --granularity g128 "${FULL[@]}" \
    --json $OUT/quarot_rtn_g128.json
  $Q eval --checkpoint $ck --granularity g128 "${FULL[@]}" --json $OUT/quarot_gptq_g128.json
  for g in per_channel mixed; do
    $Q eval --checkpoint $ck --granularity $g "${PPL[@]}" --json $OUT/quarot_gptq_$g.json
  done
  $Q eval --checkpoint $ck --granularity g128 --kv-bits 4 "${FULL[@]}" \
    --json $OUT/quarot_gptq_g128_kv4.json
  for a in 16 8; do
    $Q eval --checkpoint $ck --granularity g128 --act-bits $a "${PPL[@]}" \
      --json $OUT/quarot_gptq_g128_a$a.json
  done
}

case "${1:-all}" in
  quantize) quantize ;;
  eval) evaluate ;;
  all) quantize; evaluate ;;
  *) echo "usage: $0 [quantize|eval|all]" >&2; exit 2 ;;
esac
