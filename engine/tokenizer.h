// Byte-level BPE tokenizer (GPT-2 family: SmolLM2, LLaMA-3, Qwen), built from a format-neutral
// TokenizerSpec so that GGUF metadata and Hugging Face tokenizer.json feed the same code.
// Matches llama.cpp's llama-vocab for the pre-tokenizers it supports.
#ifndef APEX4_ENGINE_TOKENIZER_H_
#define APEX4_ENGINE_TOKENIZER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace apex4 {

// Token kinds, numbered as GGUF's tokenizer.ggml.token_type.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // <|im_start|>, <|endoftext|>: matched only when parse_special
  kUserDefined = 4,  // added tokens matched in any text
  kUnused = 5,
  kByte = 6,
};

inline constexpr int32_t kNoToken = -1;

// Bytes [begin, end) of a text.
struct TextRange {
  size_t begin = 0;
  size_t end = 0;
};

// Everything a tokenizer is made from, independent of the file it came from.
struct TokenizerSpec {
  // Vocabulary entries in the GPT-2 byte-to-unicode alphabet (e.g. "Ġthe"), indexed by id.
  std::vector<std::string> tokens;
  // Same length as tokens, or empty (all kNormal).
  std::vector<TokenType> token_types;
  // Merge rules in rank order, each "left right" (one space between the two pieces).
  std::vector<std::string> merges;
  // Pre-tokenizer name as GGUF's tokenizer.ggml.pre spells it ("smollm", "gpt2", "llama-bpe").
  std::string pre_tokenizer = "gpt2";
  // A word that is itself a vocabulary entry becomes that token without merging (Llama-3).
  bool ignore_merges = false;
  int32_t bos_id = kNoToken;
  int32_t eos_id = kNoToken;
  int32_t eot_id = kNoToken;  // end of turn (<|im_end|>, <|eot_id|>), if the model has one
  int32_t padding_id = kNoToken;
  bool add_bos = false;       // whether prompts start with BOS by default
  std::string chat_template;  // Jinja source, possibly empty
};

// Immutable after Create(); all methods are const and thread-safe.
class Tokenizer {
 public:
  // INVALID_ARGUMENT for inconsistent specs (merges naming unknown tokens, ids out of range, ...);
  // UNIMPLEMENTED for a pre-tokenizer it does not know.
  static absl::StatusOr<Tokenizer> Create(TokenizerSpec spec);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids for `text`, which must be valid UTF-8 (INVALID_ARGUMENT otherwise). User-defined
  // tokens written in the text always become their single ids; control tokens (e.g.
  // "<|im_start|>") only with `parse_special`, else they are ordinary text. `add_bos` prepends
  // BOS only if the model asks for it (TokenizerSpec::add_bos), as llama.cpp's add_special does.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_bos,
                                              bool parse_special) const;
  // Encode(text, add_bos, /*parse_special=*/true), except that no control token is matched where
  // it would overlap one of `literal_ranges` (sorted, disjoint ranges of `text`): there
  // "<|im_end|>" is ordinary text, as with parse_special false. For prompts that put untrusted
  // text (chat messages) inside trusted markup. The pieces between control tokens are
  // pre-tokenized whole, so text without control tokens gets the same ids as from Encode.
  // INVALID_ARGUMENT for ranges out of order or past the end of `text`.
  absl::StatusOr<std::vector<int32_t>> EncodeWithLiteralRanges(
      std::string_view text, bool add_bos, absl::Span<const TextRange> literal_ranges) const;

  // Raw bytes of one token (may be part of a UTF-8 character). Control tokens give their text
  // only with `render_special`. INVALID_ARGUMENT for an id out of range.
  absl::StatusOr<std::string> TokenPiece(int32_t id, bool render_special = false) const;
  // Concatenated bytes of `ids`; may end in an incomplete UTF-8 character.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool render_special = false) const;

  // Vocabulary entry as stored (byte-to-unicode alphabet), for the Tokenize RPC.
  absl::StatusOr<std::string> TokenText(int32_t id) const;

  int32_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  bool add_bos() const;
  // True for ids that end a generation: EOS, end-of-turn and other end-of-generation tokens.
  bool IsEndOfGeneration(int32_t id) const;
  TokenType token_type(int32_t id) const;
  const std::string& chat_template() const;
  const std::string& pre_tokenizer() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of token ids into text for streaming: holds back the bytes of a UTF-8 character
// split across tokens until it is complete, so every returned chunk is valid UTF-8.
// One per sequence; not thread-safe.
class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {}

  // Text that became complete with `id` (possibly empty).
  absl::StatusOr<std::string> Append(int32_t id);
  // At the end of the stream: the held-back bytes, with invalid sequences replaced by U+FFFD.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;  // not owned
  std::string pending_;         // bytes of an incomplete UTF-8 character
};

}  // namespace apex4

#endif  // APEX4_ENGINE_TOKENIZER_H_
