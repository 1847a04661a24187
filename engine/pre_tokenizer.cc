#include "engine/pre_tokenizer.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/unicode.h"

namespace apex4 {
namespace {

struct Codepoint {
  uint32_t value;
  size_t byte_offset;
  uint8_t classes;
};

std::vector<Codepoint> DecodeCodepoints(std::string_view text) {
  std::vector<Codepoint> codepoints;
  codepoints.reserve(text.size());
  size_t offset = 0;
  while (offset < text.size()) {
    const size_t start = offset;
    uint32_t value;
    if (!DecodeUtf8(text, &offset, &value)) {  // callers validate; never loop forever
      value = kReplacementCharacter;
      offset = start + 1;
    }
    codepoints.push_back({value, start, CodepointClasses(value)});
  }
  return codepoints;
}

// Which of \p{L}, \p{N}, \s or none of them (0) a codepoint belongs to.
uint8_t RunClass(uint8_t classes) {
  for (uint8_t cls : {kLetter, kNumber, kWhitespace}) {
    if (classes & cls) return cls;
  }
  return 0;
}

uint32_t AsciiLower(uint32_t codepoint) {
  return codepoint >= 'A' && codepoint <= 'Z' ? codepoint + ('a' - 'A') : codepoint;
}

bool IsNewline(uint32_t codepoint) { return codepoint == '\r' || codepoint == '\n'; }

// The GPT-2 and Llama-3 expressions over codepoints [begin, end), written out as llama.cpp's
// unicode_regex_split_custom_gpt2 / _llama3 do; `end` acts as the end of text for (?!\S).
class ExpressionSplitter {
 public:
  ExpressionSplitter(bool llama3, const std::vector<Codepoint>& codepoints, size_t text_size,
                     std::vector<size_t>* word_ends)
      : llama3_(llama3), codepoints_(codepoints), text_size_(text_size), word_ends_(word_ends) {}

  void Split(size_t begin, size_t end) {
    end_ = end;
    size_t pos = begin;
    while (pos < end) pos = Emit(llama3_ ? Llama3MatchEnd(pos) : Gpt2MatchEnd(pos));
  }

 private:
  uint32_t ValueAt(size_t pos) const { return pos < end_ ? codepoints_[pos].value : 0; }
  uint8_t ClassAt(size_t pos) const { return pos < end_ ? RunClass(codepoints_[pos].classes) : 0; }

  // 's|'t|'re|'ve|'m|'ll|'d (Llama-3: in any case): the end of the match at `pos`, or 0.
  size_t ContractionEnd(size_t pos) const {
    if (ValueAt(pos) != '\'' || pos + 1 >= end_) return 0;
    const auto lower = [&](size_t i) { return llama3_ ? AsciiLower(ValueAt(i)) : ValueAt(i); };
    const uint32_t next = lower(pos + 1);
    if (next == 's' || next == 't' || next == 'm' || next == 'd') return pos + 2;
    if (pos + 2 >= end_) return 0;
    const uint32_t after = lower(pos + 2);
    const bool two_letters = (next == 'r' && after == 'e') || (next == 'v' && after == 'e') ||
                             (next == 'l' && after == 'l');
    return two_letters ? pos + 3 : 0;
  }

  // \s+(?!\S)|\s+, and for Llama-3 first \s*[\r\n]+. A whitespace run followed by more text
  // leaves its last codepoint to the next word (so " word" keeps its space).
  size_t WhitespaceMatchEnd(size_t pos) const {
    size_t end = pos;
    size_t after_last_newline = 0;
    while (ClassAt(end) == kWhitespace) {
      if (IsNewline(ValueAt(end))) after_last_newline = end + 1;
      ++end;
    }
    if (llama3_ && after_last_newline > 0) return after_last_newline;
    if (end - pos > 1 && end < end_) return end - 1;
    return end > pos ? end : pos + 1;  // a lone codepoint no alternative matches
  }

  size_t Gpt2MatchEnd(size_t pos) const {
    if (const size_t end = ContractionEnd(pos)) return end;
    // " ?X+" for X in \p{L}, \p{N} and [^\s\p{L}\p{N}]: an optional space, then a run of X.
    const size_t run_start = ValueAt(pos) == ' ' && pos + 1 < end_ ? pos + 1 : pos;
    const uint8_t run_class = ClassAt(run_start);
    if (run_class == kWhitespace) return WhitespaceMatchEnd(pos);
    size_t end = run_start;
    while (end < end_ && ClassAt(end) == run_class) ++end;
    return end;
  }

  size_t Llama3MatchEnd(size_t pos) const {
    if (const size_t end = ContractionEnd(pos)) return end;
    const uint32_t cpt = ValueAt(pos);
    const uint8_t cls = ClassAt(pos);
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!IsNewline(cpt) && cls != kNumber && (cls == kLetter || ClassAt(pos + 1) == kLetter)) {
      size_t end = pos + 1;
      while (ClassAt(end) == kLetter) ++end;
      return end;
    }
    // \p{N}{1,3}
    if (cls == kNumber) {
      size_t end = pos + 1;
      while (end < pos + 3 && ClassAt(end) == kNumber) ++end;
      return end;
    }
    // " ?[^\s\p{L}\p{N}]+[\r\n]*"
    const size_t run_start = cpt == ' ' && pos + 1 < end_ ? pos + 1 : pos;
    if (ClassAt(run_start) == 0) {
      size_t end = run_start;
      while (end < end_ && ClassAt(end) == 0) ++end;
      while (end < end_ && IsNewline(ValueAt(end))) ++end;
      return end;
    }
    return WhitespaceMatchEnd(pos);
  }

  size_t Emit(size_t end) {
    word_ends_->push_back(end < codepoints_.size() ? codepoints_[end].byte_offset : text_size_);
    return end;
  }

  const bool llama3_;
  const std::vector<Codepoint>& codepoints_;
  const size_t text_size_;
  std::vector<size_t>* word_ends_;
  size_t end_ = 0;
};

}  // namespace

absl::StatusOr<PreTokenizerKind> PreTokenizerFromName(std::string_view name) {
  // The names llama.cpp's llama-vocab maps to these two expressions.
  for (const char* gpt2 : {"gpt2", "mpt", "olmo", "jais"}) {
    if (name == gpt2) return PreTokenizerKind::kGpt2;
  }
  for (const char* single_digits :
       {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}) {
    if (name == single_digits) return PreTokenizerKind::kGpt2SingleDigits;
  }
  for (const char* llama3 : {"llama3", "llama-v3", "llama-bpe"}) {
    if (name == llama3) return PreTokenizerKind::kLlama3;
  }
  return absl::UnimplementedError(absl::StrCat("pre-tokenizer \"", std::string(name),
                                               "\" is not supported (supported: gpt2, smollm, "
                                               "llama-bpe and the names llama.cpp treats alike)"));
}

std::vector<std::string_view> PreTokenize(PreTokenizerKind kind, std::string_view text) {
  const std::vector<Codepoint> codepoints = DecodeCodepoints(text);
  std::vector<size_t> word_ends;
  ExpressionSplitter splitter(kind == PreTokenizerKind::kLlama3, codepoints, text.size(),
                              &word_ends);
  if (kind != PreTokenizerKind::kGpt2SingleDigits) {
    splitter.Split(0, codepoints.size());
  } else {
    // Each number codepoint is a word; the GPT-2 expression runs on the text between them.
    size_t piece_begin = 0;
    for (size_t i = 0; i < codepoints.size(); ++i) {
      if (!(codepoints[i].classes & kNumber)) continue;
      splitter.Split(piece_begin, i);
      word_ends.push_back(i + 1 < codepoints.size() ? codepoints[i + 1].byte_offset : text.size());
      piece_begin = i + 1;
    }
    splitter.Split(piece_begin, codepoints.size());
  }
  std::vector<std::string_view> words;
  words.reserve(word_ends.size());
  size_t word_begin = 0;
  for (size_t word_end : word_ends) {
    words.push_back(text.substr(word_begin, word_end - word_begin));
    word_begin = word_end;
  }
  return words;
}

}  // namespace apex4
