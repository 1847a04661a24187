// libFuzzer target: the real SmolLM2 tokenizer (loaded once from the default model's GGUF) on
// arbitrary bytes. The first byte picks the options; the rest is text to encode and, read as
// little-endian int32s, token ids to decode, one at a time through the streaming detokenizer too.
// Checked properties: valid UTF-8 text round-trips exactly through Encode and Decode (when each
// of its bytes has a token), encoded ids
// are inside the vocabulary, and every streamed chunk is valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "engine/gguf_reader.h"
#include "engine/test_files.h"
#include "engine/tokenizer.h"
#include "engine/tokenizer_loader.h"
#include "engine/unicode.h"

namespace {

const apex4::Tokenizer* tokenizer = nullptr;
// Bytes with a token of their own. A byte without one is dropped by Encode, as llama.cpp does
// (SmolLM2 has none for some ASCII control characters), so only text made of these round-trips.
bool has_byte_token[256] = {};

bool AllBytesHaveTokens(std::string_view text) {
  for (unsigned char c : text) {
    if (!has_byte_token[c]) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  const std::string path = apex4::DefaultModelPath();
  auto gguf = apex4::GgufReader::Open(path);
  if (!gguf.ok()) {
    std::fprintf(stderr, "tokenizer_fuzzer: no model (%s); set APEX4_MODEL\n",
                 std::string(gguf.status().message()).c_str());
    std::exit(1);
  }
  auto loaded = apex4::TokenizerFromGguf(**gguf);
  if (!loaded.ok()) {
    std::fprintf(stderr, "tokenizer_fuzzer: %s\n", std::string(loaded.status().message()).c_str());
    std::exit(1);
  }
  tokenizer = new apex4::Tokenizer(*std::move(loaded));
  for (int32_t id = 0; id < tokenizer->vocab_size(); ++id) {
    auto piece = tokenizer->TokenPiece(id);
    if (piece.ok() && piece->size() == 1 &&
        tokenizer->token_type(id) == apex4::TokenType::kNormal) {
      has_byte_token[static_cast<unsigned char>((*piece)[0])] = true;
    }
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool add_bos = data[0] & 1;
  const bool parse_special = data[0] & 2;
  const bool render_special = data[0] & 4;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  auto ids = tokenizer->Encode(text, add_bos, parse_special);
  if (ids.ok()) {
    for (int32_t id : *ids) {
      if (id < 0 || id >= tokenizer->vocab_size()) __builtin_trap();
    }
    if (!add_bos && !parse_special && AllBytesHaveTokens(text)) {
      auto decoded = tokenizer->Decode(*ids);
      if (!decoded.ok() || *decoded != text) {  // byte-level BPE is lossless
        std::fprintf(stderr, "round trip failed: %s\nids:", decoded.status().ToString().c_str());
        for (int32_t id : *ids) std::fprintf(stderr, " %d", id);
        std::fprintf(stderr, "\ndecoded: '%s'\n", decoded.ok() ? decoded->c_str() : "");
        __builtin_trap();
      }
    }
  }

  std::vector<int32_t> raw_ids((size - 1) / 4);
  if (!raw_ids.empty()) std::memcpy(raw_ids.data(), data + 1, raw_ids.size() * 4);
  (void)tokenizer->Decode(raw_ids, render_special);
  apex4::IncrementalDetokenizer detokenizer(tokenizer);
  for (int32_t id : raw_ids) {
    // Keep ids mostly inside the vocabulary so that decoding, not range checks, is exercised.
    if (!(data[0] & 8)) id = static_cast<int32_t>(static_cast<uint32_t>(id) % 50000);
    (void)tokenizer->TokenPiece(id, render_special);
    (void)tokenizer->TokenText(id);
    (void)tokenizer->IsEndOfGeneration(id);
    auto chunk = detokenizer.Append(id);
    if (chunk.ok() && !apex4::IsValidUtf8(*chunk)) __builtin_trap();
  }
  if (!apex4::IsValidUtf8(detokenizer.Flush())) __builtin_trap();
  return 0;
}
