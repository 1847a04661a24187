#!/usr/bin/env bash
# Runs the C++ unit tests (sizes small and medium; the large end-to-end and model tests are left
# to the plain build) under AddressSanitizer + UndefinedBehaviorSanitizer (--config=asan, g++).
# Uses a Bazel output base of its own and no bazel-* links, so the default build's cache and
# links are untouched.
#
#   tools/run_sanitizers.sh [bazel test options] [target patterns]   (default: every package)
set -euo pipefail
cd "$(dirname "$0")/.."

OUTPUT_BASE="${APEX4_ASAN_OUTPUT_BASE:-$HOME/.cache/bazel_asan}"
options=()
targets=()
for arg in "$@"; do
  case "$arg" in -*) options+=("$arg") ;; *) targets+=("$arg") ;; esac
done
if [ ${#targets[@]} -eq 0 ]; then
  # Every package of the checkout, not //...: under another output base the bazel-* convenience
  # links of the default one are ordinary folders to it, full of Bazel's own BUILD files.
  for dir in $(git ls-files | grep -E '(^|/)BUILD$' | grep / | cut -d/ -f1 | sort -u); do
    targets+=("//$dir/...")
  done
fi

# Tests that assert a speed, which instrumented -O1 code on a loaded machine need not reach
# (gtest negative filter, applied to every test binary).
SPEED_TESTS="CpuProbe.MeasuresPlausibleRates"

start=$(date +%s)
# A Bazel server of its own; it exits when idle for 5 minutes.
bazel --output_base="$OUTPUT_BASE" --max_idle_secs=300 test --config=asan \
  --test_size_filters=small,medium --test_lang_filters=cc --build_tests_only \
  --test_filter="-${SPEED_TESTS}" --symlink_prefix=/ "${options[@]}" -- "${targets[@]}"
echo "[asan] done in $(( $(date +%s) - start ))s"
