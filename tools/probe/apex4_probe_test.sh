#!/usr/bin/env bash
set -euo pipefail
probe=tools/probe/apex4_probe
out="${TEST_TMPDIR:-/tmp}/profile.json"

"$probe" --output="$out" --shapes=128x256 --m_buckets=1,4 --threads=1 > "$TEST_TMPDIR/log" 2>&1 \
  || { cat "$TEST_TMPDIR/log"; exit 1; }
cat "$TEST_TMPDIR/log"
python3 - "$out" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
assert p["format"] == "apex4.node_profile" and p["version"] == 1, p
assert p["device"]["backend"] in ("cpu", "cuda"), p["device"]
t = p["throughput"]
assert t["fp32_fma_flops"] > 0 and t["memory_bytes_per_s"] > 0, t
assert abs(p["rho"] - max(t["matrix_int4_ops"], t["matrix_int8_ops"]) / t["fp32_fma_flops"]) < 1e-6 * p["rho"]
if p["device"]["backend"] == "cpu":
    shapes = {(x["n"], x["k"], x["m"], x["granularity"]) for x in p["timings"]}
    for m in (1, 4):
        for g in ("per_channel", "g128"):
            assert (128, 256, m, g) in shapes, (m, g, shapes)
print("profile ok")
PY

expect_refusal() {  # args: expected-message flags...
  local expected="$1"; shift
  if "$probe" "$@" > "$TEST_TMPDIR/bad" 2>&1; then echo "accepted: $*"; exit 1; fi
  grep -q -- "$expected" "$TEST_TMPDIR/bad" || { echo "no '$expected' in:"; cat "$TEST_TMPDIR/bad"; exit 1; }
}
expect_refusal "--output is required" --shapes=128x256
expect_refusal "not NxK" --output="$out" --shapes=128x100
expect_refusal "--backend must be" --output="$out" --backend=tpu
expect_refusal "not a positive integer" --output="$out" --m_buckets=1,0
echo "PASS"
