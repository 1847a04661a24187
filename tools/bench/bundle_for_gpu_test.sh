#!/usr/bin/env bash
# bundle_for_gpu.sh on the Bazel-built server and the default model: the bundle holds a server
# that starts through its wrapper (with only the bundle's libraries added to the path), a
# grpcurl that runs, and a tokenizer GGUF with the model's vocabulary and no tensors.
set -euo pipefail
model="$(ls ../default_model/*.gguf external/default_model/*.gguf 2> /dev/null | head -1)"
out="$TEST_TMPDIR/bundle"
tools/bench/bundle_for_gpu.sh "$out" server/apex4_server "$model"

for f in apex4_server bin/apex4_server grpcurl tokenizer.gguf; do
  [ -s "$out/$f" ] || { echo "missing $f"; exit 1; }
done
ls "$out"/lib/libgrpc++.so.* > /dev/null
if ls "$out"/lib | grep -E '^(libc|libstdc\+\+|libcuda|libcublas)\.so'; then
  echo "bundled a library the GPU machine brings"; exit 1
fi
env -u LD_LIBRARY_PATH "$out/apex4_server" --helpfull > "$TEST_TMPDIR/help" 2>&1 || true  # abseil exits 1 after help
grep -q -- "--backend" "$TEST_TMPDIR/help" || { cat "$TEST_TMPDIR/help"; exit 1; }
"$out/grpcurl" -version 2>&1 | grep -q grpcurl
python3 - "$out/tokenizer.gguf" "$model" <<'PY'
import os, sys
import gguf
small, full = gguf.GGUFReader(sys.argv[1]), gguf.GGUFReader(sys.argv[2])
assert len(small.tensors) == 0, len(small.tensors)
tokens = lambda r: [bytes(r.fields["tokenizer.ggml.tokens"].parts[i]) for i in r.fields["tokenizer.ggml.tokens"].data]
assert tokens(small) == tokens(full)
assert os.path.getsize(sys.argv[1]) < 8 << 20, os.path.getsize(sys.argv[1])
print("tokenizer.gguf:", len(tokens(small)), "tokens,", os.path.getsize(sys.argv[1]), "bytes")
PY
echo PASS
