#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (--config=fuzz: libFuzzer + ASan + UBSan) in a separate
# Bazel output base and without bazel-* links, so the default g++ build's cache and links are
# untouched, then runs each one for a
# bounded time from its checked-in seed corpus. Fails on the first crash, leak, sanitizer report
# or timeout; the reproducer is left in $ARTIFACTS (default /tmp/apex4_fuzz).
#
#   tools/run_fuzzers.sh [SECONDS_PER_FUZZER]   (default 30)
#
# A finding is replayed with `<fuzzer binary> <reproducer file>`; add the (minimised) file to the
# fuzzer's corpus folder as a regression input once the bug is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${1:-30}"
OUTPUT_BASE="${APEX4_FUZZ_OUTPUT_BASE:-$HOME/.cache/bazel_fuzz}"
ARTIFACTS="${ARTIFACTS:-/tmp/apex4_fuzz}"
# fuzzer target:seed corpus folder
FUZZERS=(
  //engine/fuzz:gguf_reader_fuzzer:engine/fuzz/testdata/gguf_reader
  //engine/fuzz:safetensors_reader_fuzzer:engine/fuzz/testdata/safetensors_reader
  //engine/fuzz:apex4_checkpoint_fuzzer:engine/fuzz/testdata/apex4_checkpoint
  //engine/fuzz:tokenizer_fuzzer:engine/fuzz/testdata/tokenizer
  //server/fuzz:request_validation_fuzzer:server/fuzz/testdata/request_validation
)

# A Bazel server of its own; it exits when idle for 5 minutes.
bazel_fuzz() { bazel --output_base="$OUTPUT_BASE" --max_idle_secs=300 "$@"; }

targets=()
for entry in "${FUZZERS[@]}"; do targets+=("${entry%:*}"); done
start=$(date +%s)
# (ld.gold warns about every ASan helper symbol; those lines are dropped.)
if ! bazel_fuzz build --config=fuzz --symlink_prefix=/ "${targets[@]}" 2>&1 |
     { grep -v "Cannot export local symbol" || true; }; then
  echo "[fuzz] build failed" >&2
  exit 1
fi
bin="$(bazel_fuzz info --config=fuzz bazel-bin 2>/dev/null)"
echo "[fuzz] built in $(( $(date +%s) - start ))s"

# The tokenizer fuzzer loads the real vocabulary once (see engine/test_files.h).
export APEX4_MODEL="${APEX4_MODEL:-$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
# The file readers' inputs are written to a temporary file per run: keep it in memory.
[ -d /dev/shm ] && export TMPDIR="${TMPDIR:-/dev/shm}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
mkdir -p "$ARTIFACTS"

failed=()
for entry in "${FUZZERS[@]}"; do
  target="${entry%:*}"
  seeds="${entry##*:}"
  name="${target##*:}"
  binary="$bin/$(echo "${target#//}" | tr ':' '/')"
  # Inputs the fuzzer finds go to a scratch folder; the checked-in corpus is only read.
  work="$ARTIFACTS/$name.corpus"
  mkdir -p "$work"
  log="$ARTIFACTS/$name.log"
  t0=$(date +%s)
  if "$binary" "$work" "$seeds" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=4096 \
       -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$name-" >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    echo "[fuzz] $name: ok, ${runs:-?} runs in $(( $(date +%s) - t0 ))s"
  else
    echo "[fuzz] $name: FAILED (log $log)" >&2
    grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$log" | head -20 >&2 || true
    failed+=("$name")
  fi
done
echo "[fuzz] total $(( $(date +%s) - start ))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "[fuzz] failed: ${failed[*]}" >&2
  exit 1
fi
