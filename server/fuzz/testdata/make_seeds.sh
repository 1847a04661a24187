#!/usr/bin/env bash
# Writes the request_validation fuzzer's seeds: real requests in text format, encoded by protoc.
set -euo pipefail
cd "$(dirname "$0")/../../.."
D=server/fuzz/testdata/request_validation
mkdir -p "$D"
enc() { protoc -Iproto --encode="apex4.v1.$1" proto/apex4/v1/generation.proto >"$D/$2"; }
echo 'text: "Hello, how are you?" sampling { max_tokens: 32 temperature: 0.7 top_p: 0.9 top_k: 40 seed: 7 stop: "\n\n" stop: "User:" } request_id: "req-1"' | enc GenerateRequest text_sampling
echo 'token_ids { ids: [1, 9690, 198, 49151] } sampling { max_tokens: 8 }' | enc GenerateRequest token_ids
echo 'chat { messages { role: "system" content: "Be brief." } messages { role: "user" content: "naïve café 東京 🙂" } } sampling { max_tokens: 16 ignore_eos: true }' | enc GenerateRequest chat
echo 'text: "x" sampling { max_tokens: -1 temperature: nan top_p: 1.5 }' | enc GenerateRequest bad_sampling
echo 'text: "Count to ten." add_bos: false' | enc TokenizeRequest tokenize_text
