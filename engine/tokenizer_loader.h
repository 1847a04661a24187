// Builds a Tokenizer from the files models come in: GGUF metadata (tokenizer.ggml.*) or a
// Hugging Face tokenizer.json with its tokenizer_config.json.
#ifndef APEX4_ENGINE_TOKENIZER_LOADER_H_
#define APEX4_ENGINE_TOKENIZER_LOADER_H_

#include <string>

#include "absl/status/statusor.h"
#include "engine/gguf_reader.h"
#include "engine/tokenizer.h"

namespace apex4 {

// From tokenizer.ggml.* and tokenizer.chat_template. UNIMPLEMENTED for tokenizer models other
// than byte-level BPE ("gpt2") and for unknown pre-tokenizers; INVALID_ARGUMENT, naming the
// key, for missing or malformed metadata.
absl::StatusOr<TokenizerSpec> TokenizerSpecFromGguf(const GgufReader& gguf);
absl::StatusOr<Tokenizer> TokenizerFromGguf(const GgufReader& gguf);

// From a tokenizer.json (BPE model; ByteLevel pre-tokenizer, alone or after single Digits or
// Llama-3's Split) and, when present beside it, tokenizer_config.json (bos/eos tokens,
// add_bos_token, chat_template) or chat_template.jinja.
// Merges may be "left right" strings or [left, right] pairs.
absl::StatusOr<TokenizerSpec> TokenizerSpecFromJson(const std::string& tokenizer_json_path);
absl::StatusOr<Tokenizer> TokenizerFromJson(const std::string& tokenizer_json_path);

}  // namespace apex4

#endif  // APEX4_ENGINE_TOKENIZER_LOADER_H_
