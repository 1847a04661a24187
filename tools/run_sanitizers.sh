#!/usr/bin/env bash
# Runs the C++ unit tests (sizes small and medium; the large model tests are left to the plain
# build) under AddressSanitizer + UndefinedBehaviorSanitizer (--config=asan, g++), then the
# end-to-end tests of the real server (E2E_TESTS below): built in the same configuration, the
# apex4_server they start through tests/server_harness.py is the ASan + UBSan binary, and a
# report in it fails the test (see config asan in .bazelrc).
# Uses a Bazel output base of its own and no bazel-* links, so the default build's cache and
# links are untouched.
#
#   tools/run_sanitizers.sh [bazel test options] [target patterns]
#   (default: every package's unit tests, then E2E_TESTS; with patterns, their unit tests only)
set -euo pipefail
cd "$(dirname "$0")/.."

OUTPUT_BASE="${APEX4_ASAN_OUTPUT_BASE:-$HOME/.cache/bazel_asan}"
options=()
targets=()
for arg in "$@"; do
  case "$arg" in -*) options+=("$arg") ;; *) targets+=("$arg") ;; esac
done
e2e_tests=()
if [ ${#targets[@]} -eq 0 ]; then
  # The real apex4_server end to end (tests/BUILD), about 2.5 minutes on 2 cores. Left out:
  # load_smoke_test, whose 20-second run takes ~165 s at -O1 with ASan (1.8 tokens/s) and whose
  # bound on RSS growth (5%) ASan's own quarantine nears (+3.2% in a run that passed).
  e2e_tests=(//tests:server_e2e_test //tests:bad_input_test //tests:server_lifecycle_test
             //tests:tls_test //tests:node_profile_test)
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
echo "[asan] unit tests done in $(( $(date +%s) - start ))s"
if [ ${#e2e_tests[@]} -gt 0 ]; then
  start=$(date +%s)
  bazel --output_base="$OUTPUT_BASE" --max_idle_secs=300 test --config=asan \
    --symlink_prefix=/ "${options[@]}" -- "${e2e_tests[@]}"
  echo "[asan] end-to-end tests done in $(( $(date +%s) - start ))s"
fi
