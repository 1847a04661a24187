// Pre-tokenizers of byte-level BPE: split text into words before merges run, as the regexes of
// the model's tokenizer do. Hand-written (no std::regex, which lacks Unicode classes) and
// matching llama.cpp's llama-vocab for the names it maps to the same expressions.
#ifndef APEX4_ENGINE_PRE_TOKENIZER_H_
#define APEX4_ENGINE_PRE_TOKENIZER_H_

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace apex4 {

enum class PreTokenizerKind {
  // GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // Every \p{N} codepoint on its own first, then GPT-2 on the rest (SmolLM, StarCoder).
  kGpt2SingleDigits,
  // Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  //          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
};

// Maps GGUF's tokenizer.ggml.pre (e.g. "smollm", "gpt2", "llama-bpe") to a kind; UNIMPLEMENTED
// otherwise.
absl::StatusOr<PreTokenizerKind> PreTokenizerFromName(std::string_view name);

// Splits `text`, which must be valid UTF-8, into consecutive non-empty words that together are
// the whole text.
std::vector<std::string_view> PreTokenize(PreTokenizerKind kind, std::string_view text);

}  // namespace apex4

#endif  // APEX4_ENGINE_PRE_TOKENIZER_H_
