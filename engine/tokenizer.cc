#include "engine/tokenizer.h"

#include <algorithm>
#include <array>
#include <queue>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "engine/pre_tokenizer.h"
#include "engine/status_macros.h"
#include "engine/unicode.h"

namespace apex4 {
namespace {

// GPT-2's reversible byte-to-unicode map: printable bytes stand for themselves, the other 68
// bytes for U+0100 onwards, so every vocabulary entry is printable text.
std::array<uint32_t, 256> ByteToCodepointTable() {
  std::array<uint32_t, 256> table{};
  uint32_t next_substitute = 256;
  for (uint32_t byte = 0; byte < 256; ++byte) {
    const bool printable =
        (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
    table[byte] = printable ? byte : next_substitute++;
  }
  return table;
}

// Raw bytes of a vocabulary entry written in the byte-to-unicode alphabet. Codepoints outside
// the alphabet are kept as their UTF-8, as llama.cpp's llama_decode_text does.
std::string BytesOfEntry(std::string_view entry,
                         const absl::flat_hash_map<uint32_t, char>& codepoint_to_byte) {
  std::string bytes;
  size_t offset = 0;
  while (offset < entry.size()) {
    const size_t start = offset;
    uint32_t codepoint;
    if (!DecodeUtf8(entry, &offset, &codepoint)) {
      bytes.push_back(entry[start]);
      offset = start + 1;
      continue;
    }
    const auto it = codepoint_to_byte.find(codepoint);
    if (it != codepoint_to_byte.end()) {
      bytes.push_back(it->second);
    } else {
      bytes.append(entry.substr(start, offset - start));
    }
  }
  return bytes;
}

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

struct MergeRule {
  int32_t rank;
  int32_t result;
};

// Tokens that end a generation by their text, whatever the model's metadata says, as llama.cpp's
// llama-vocab decides: end-of-turn markers and the fill-in-the-middle pad/repo/file separators.
constexpr const char* kEndOfGenerationNames[] = {
    "<|eot_id|>",      "<|im_end|>",         "<|end|>",       "<|return|>", "<|call|>",
    "<end_of_turn>",   "<|endoftext|>",      "<|eom_id|>",    "<EOT>",      "_<EOT>",
    "<|end_of_text|>", "<end_of_utterance>", "<|fim_pad|>",   "<fim-pad>",  "<fim_pad>",
    "<PAD>",           "<|fim_repo|>",       "<|repo_name|>", "<fim-repo>", "<REPO>",
    "<reponame>",      "<|file_sep|>"};

// A stretch of the input: either text still to pre-tokenize or an already matched special token.
struct Fragment {
  std::string_view text;
  int32_t special_id = kNoToken;
};

}  // namespace

struct Tokenizer::Impl {
  TokenizerSpec spec;
  PreTokenizerKind pre_tokenizer;
  std::vector<std::string> piece_bytes;         // by id: the bytes the token stands for
  std::array<int32_t, 256> byte_token;          // by byte: its single-byte token, or kNoToken
  std::array<uint32_t, 256> byte_to_codepoint;  // GPT-2's byte-to-unicode map
  absl::flat_hash_map<std::string_view, int32_t> id_of_entry;  // by vocabulary entry
  absl::flat_hash_map<uint64_t, MergeRule> merges;             // by (left id, right id)
  // Tokens matched as a whole in the input, longest first.
  std::vector<std::pair<std::string_view, int32_t>> special_tokens;
  absl::flat_hash_set<int32_t> end_of_generation;

  void EncodeWord(std::string_view word, std::vector<int32_t>* ids) const;
  // Control tokens are matched only with `parse_special` and outside `literal_ranges`.
  std::vector<Fragment> SplitSpecialTokens(std::string_view text, bool parse_special,
                                           absl::Span<const TextRange> literal_ranges) const;
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_bos,
                                              bool parse_special,
                                              absl::Span<const TextRange> literal_ranges) const;
};

// Byte-pair merging of one pre-tokenized word: repeatedly merges the adjacent pair with the
// lowest rank (leftmost on ties), as llama.cpp's llm_tokenizer_bpe_session does.
void Tokenizer::Impl::EncodeWord(std::string_view word, std::vector<int32_t>* ids) const {
  if (spec.ignore_merges) {
    std::string entry;
    for (char byte : word) AppendUtf8(byte_to_codepoint[static_cast<unsigned char>(byte)], &entry);
    const auto it = id_of_entry.find(entry);
    if (it != id_of_entry.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
  };
  struct Candidate {
    int32_t rank;
    int32_t left;
    int32_t left_id;
    int32_t right_id;
    bool operator<(const Candidate& other) const {  // the queue pops the lowest rank first
      return rank != other.rank ? rank > other.rank : left > other.left;
    }
  };
  const int32_t length = static_cast<int32_t>(word.size());
  std::vector<Symbol> symbols(length);
  for (int32_t i = 0; i < length; ++i) {
    symbols[i] = {byte_token[static_cast<unsigned char>(word[i])], i - 1,
                  i + 1 < length ? i + 1 : -1};
  }
  std::priority_queue<Candidate> queue;
  const auto consider = [&](int32_t left) {
    if (left < 0 || symbols[left].next < 0) return;
    const int32_t left_id = symbols[left].id;
    const int32_t right_id = symbols[symbols[left].next].id;
    const auto it = merges.find(PairKey(left_id, right_id));
    if (it != merges.end()) queue.push({it->second.rank, left, left_id, right_id});
  };
  for (int32_t i = 0; i + 1 < length; ++i) consider(i);

  while (!queue.empty()) {
    const Candidate candidate = queue.top();
    queue.pop();
    Symbol& left = symbols[candidate.left];
    // Skip pairs that an earlier merge changed.
    if (left.id != candidate.left_id || left.next < 0 ||
        symbols[left.next].id != candidate.right_id) {
      continue;
    }
    Symbol& right = symbols[left.next];
    left.id = merges.at(PairKey(candidate.left_id, candidate.right_id)).result;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = candidate.left;
    right.id = kNoToken;
    consider(left.prev);
    consider(candidate.left);
  }
  // A byte without a token of its own is dropped, as llama.cpp does.
  for (int32_t i = 0; i >= 0 && i < length; i = symbols[i].next) {
    if (symbols[i].id != kNoToken) ids->push_back(symbols[i].id);
  }
}

// Whether [begin, end) overlaps one of `ranges` (sorted, disjoint).
bool OverlapsAny(absl::Span<const TextRange> ranges, size_t begin, size_t end) {
  const auto after = std::upper_bound(
      ranges.begin(), ranges.end(), begin,
      [](size_t position, const TextRange& range) { return position < range.end; });
  return after != ranges.end() && after->begin < end;
}

// Cuts the matched special tokens out of `text`, longest token first, as llama.cpp's
// tokenizer_st_partition does.
std::vector<Fragment> Tokenizer::Impl::SplitSpecialTokens(
    std::string_view text, bool parse_special, absl::Span<const TextRange> literal_ranges) const {
  std::vector<Fragment> fragments = {{text}};
  for (const auto& [token_text, id] : special_tokens) {
    const bool user_defined = spec.token_types[id] == TokenType::kUserDefined;
    if (!parse_special && !user_defined) continue;
    std::vector<Fragment> split;
    for (const Fragment& fragment : fragments) {
      if (fragment.special_id != kNoToken) {
        split.push_back(fragment);
        continue;
      }
      std::string_view rest = fragment.text;
      size_t from = 0;
      for (size_t found; (found = rest.find(token_text, from)) != std::string_view::npos;) {
        const size_t begin = static_cast<size_t>(rest.data() - text.data()) + found;
        if (!user_defined && OverlapsAny(literal_ranges, begin, begin + token_text.size())) {
          from = found + 1;  // literal text here; look further on
          continue;
        }
        if (found > 0) split.push_back({rest.substr(0, found)});
        split.push_back({rest.substr(found, token_text.size()), id});
        rest.remove_prefix(found + token_text.size());
        from = 0;
      }
      if (!rest.empty()) split.push_back({rest});
    }
    fragments = std::move(split);
  }
  return fragments;
}

absl::StatusOr<Tokenizer> Tokenizer::Create(TokenizerSpec spec) {
  const auto vocab_size = static_cast<int32_t>(spec.tokens.size());
  if (vocab_size == 0) return absl::InvalidArgumentError("tokenizer has an empty vocabulary");
  if (spec.token_types.empty()) spec.token_types.assign(vocab_size, TokenType::kNormal);
  if (static_cast<int32_t>(spec.token_types.size()) != vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer has ", vocab_size, " tokens but ",
                                                   spec.token_types.size(), " token types"));
  }
  for (const auto& [name, id] : {std::pair<const char*, int32_t>{"bos", spec.bos_id},
                                 {"eos", spec.eos_id},
                                 {"eot", spec.eot_id},
                                 {"padding", spec.padding_id}}) {
    if (id != kNoToken && (id < 0 || id >= vocab_size)) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer ", name, " id ", id,
                                                     " is outside the vocabulary of ", vocab_size));
    }
  }
  auto impl = std::make_unique<Impl>();
  ASSIGN_OR_RETURN(impl->pre_tokenizer, PreTokenizerFromName(spec.pre_tokenizer));
  // Everything below views the stored spec's strings.
  impl->spec = std::move(spec);
  const std::vector<std::string>& tokens = impl->spec.tokens;
  const std::vector<TokenType>& token_types = impl->spec.token_types;

  impl->byte_to_codepoint = ByteToCodepointTable();
  const std::array<uint32_t, 256>& byte_to_codepoint = impl->byte_to_codepoint;
  absl::flat_hash_map<uint32_t, char> codepoint_to_byte;
  for (int byte = 0; byte < 256; ++byte) {
    codepoint_to_byte[byte_to_codepoint[byte]] = static_cast<char>(byte);
  }
  absl::flat_hash_map<std::string_view, int32_t>& id_of_entry = impl->id_of_entry;
  impl->piece_bytes.resize(vocab_size);
  for (int32_t id = 0; id < vocab_size; ++id) {
    const std::string& entry = tokens[id];
    id_of_entry[entry] = id;  // a repeated entry resolves to its last id, as in llama.cpp
    const TokenType type = token_types[id];
    const bool byte_level = type == TokenType::kNormal || type == TokenType::kUndefined;
    impl->piece_bytes[id] = byte_level ? BytesOfEntry(entry, codepoint_to_byte) : entry;
    const bool matched_whole = type == TokenType::kControl || type == TokenType::kUserDefined ||
                               type == TokenType::kUnknown;
    if (matched_whole && !entry.empty()) {
      impl->special_tokens.emplace_back(entry, id);
    }
  }
  std::stable_sort(impl->special_tokens.begin(), impl->special_tokens.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  for (int byte = 0; byte < 256; ++byte) {
    std::string entry;
    AppendUtf8(byte_to_codepoint[byte], &entry);
    const auto it = id_of_entry.find(entry);
    impl->byte_token[byte] = it == id_of_entry.end() ? kNoToken : it->second;
  }

  impl->merges.reserve(impl->spec.merges.size());
  for (size_t rank = 0; rank < impl->spec.merges.size(); ++rank) {
    const std::string& merge = impl->spec.merges[rank];
    const size_t space = merge.find(' ', 1);
    if (space == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", rank, " \"", merge, "\" is not two pieces split by a space"));
    }
    const std::string_view left(merge.data(), space);
    const std::string_view right = std::string_view(merge).substr(space + 1);
    const std::string merged = merge.substr(0, space) + merge.substr(space + 1);
    const auto left_it = id_of_entry.find(left);
    const auto right_it = id_of_entry.find(right);
    const auto merged_it = id_of_entry.find(merged);
    if (left_it == id_of_entry.end() || right_it == id_of_entry.end() ||
        merged_it == id_of_entry.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "merge ", rank, " \"", merge, "\" names a piece or result missing from the vocabulary"));
    }
    // The first rule for a pair wins, as in llama.cpp.
    impl->merges.try_emplace(PairKey(left_it->second, right_it->second),
                             MergeRule{static_cast<int32_t>(rank), merged_it->second});
  }

  for (int32_t id : {impl->spec.eos_id, impl->spec.eot_id}) {
    if (id != kNoToken) impl->end_of_generation.insert(id);
  }
  for (const char* name : kEndOfGenerationNames) {
    const auto it = id_of_entry.find(name);
    if (it != id_of_entry.end()) impl->end_of_generation.insert(it->second);
  }
  return Tokenizer(std::move(impl));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::vector<int32_t>> Tokenizer::Impl::Encode(
    std::string_view text, bool add_bos, bool parse_special,
    absl::Span<const TextRange> literal_ranges) const {
  if (!IsValidUtf8(text)) return absl::InvalidArgumentError("text is not valid UTF-8");
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_bos && spec.add_bos && spec.bos_id != kNoToken) ids.push_back(spec.bos_id);
  for (const Fragment& fragment : SplitSpecialTokens(text, parse_special, literal_ranges)) {
    if (fragment.special_id != kNoToken) {
      ids.push_back(fragment.special_id);
      continue;
    }
    for (std::string_view word : PreTokenize(pre_tokenizer, fragment.text)) {
      EncodeWord(word, &ids);
    }
  }
  return ids;
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, bool add_bos,
                                                       bool parse_special) const {
  return impl_->Encode(text, add_bos, parse_special, {});
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::EncodeWithLiteralRanges(
    std::string_view text, bool add_bos, absl::Span<const TextRange> literal_ranges) const {
  std::vector<TextRange> nonempty;  // an empty range covers nothing
  nonempty.reserve(literal_ranges.size());
  size_t previous_end = 0;
  for (const TextRange& range : literal_ranges) {
    if (range.begin < previous_end || range.end < range.begin || range.end > text.size()) {
      return absl::InvalidArgumentError(absl::StrCat("literal range [", range.begin, ", ",
                                                     range.end, ") is out of order or outside the ",
                                                     text.size(), " bytes of text"));
    }
    previous_end = range.end;
    if (range.end > range.begin) nonempty.push_back(range);
  }
  return impl_->Encode(text, add_bos, /*parse_special=*/true, nonempty);
}

absl::StatusOr<std::string> Tokenizer::TokenPiece(int32_t id, bool render_special) const {
  if (id < 0 || id >= vocab_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token id ", id, " is outside the vocabulary of ", vocab_size()));
  }
  switch (impl_->spec.token_types[id]) {
    case TokenType::kNormal:
    case TokenType::kUndefined:
    case TokenType::kUserDefined:
    case TokenType::kByte: return impl_->piece_bytes[id];
    case TokenType::kControl:
    case TokenType::kUnknown:
    case TokenType::kUnused: break;
  }
  return render_special ? impl_->piece_bytes[id] : std::string();
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              bool render_special) const {
  std::string text;
  for (int32_t id : ids) {
    ASSIGN_OR_RETURN(const std::string piece, TokenPiece(id, render_special));
    text += piece;
  }
  return text;
}

absl::StatusOr<std::string> Tokenizer::TokenText(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token id ", id, " is outside the vocabulary of ", vocab_size()));
  }
  return impl_->spec.tokens[id];
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->spec.tokens.size()); }
int32_t Tokenizer::bos_id() const { return impl_->spec.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->spec.eos_id; }
bool Tokenizer::add_bos() const { return impl_->spec.add_bos; }
bool Tokenizer::IsEndOfGeneration(int32_t id) const {
  return impl_->end_of_generation.contains(id);
}
TokenType Tokenizer::token_type(int32_t id) const {
  return id >= 0 && id < vocab_size() ? impl_->spec.token_types[id] : TokenType::kUndefined;
}
const std::string& Tokenizer::chat_template() const { return impl_->spec.chat_template; }
const std::string& Tokenizer::pre_tokenizer() const { return impl_->spec.pre_tokenizer; }

absl::StatusOr<std::string> IncrementalDetokenizer::Append(int32_t id) {
  ASSIGN_OR_RETURN(const std::string piece, tokenizer_->TokenPiece(id));
  pending_ += piece;
  const size_t complete = pending_.size() - IncompleteUtf8SuffixLength(pending_);
  std::string text = SanitizeUtf8(std::string_view(pending_).substr(0, complete));
  pending_.erase(0, complete);
  return text;
}

std::string IncrementalDetokenizer::Flush() {
  std::string text = SanitizeUtf8(pending_);
  pending_.clear();
  return text;
}

}  // namespace apex4
