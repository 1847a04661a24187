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

// The GPT-2 expression over codepoints [begin, end), written out as llama.cpp's
// unicode_regex_split_custom_gpt2 does; `end` acts as the end of text for (?!\S).
class Gpt2Splitter {
 public:
  Gpt2Splitter(const std::vector<Codepoint>& codepoints, size_t text_size,
               std::vector<size_t>* word_ends)
      : codepoints_(codepoints), text_size_(text_size), word_ends_(word_ends) {}

  void Split(size_t begin, size_t end) {
    end_ = end;
    size_t pos = begin;
    while (pos < end) pos = MatchAt(pos);
  }

 private:
  // Returns the end of the match that starts at `pos` and records it.
  size_t MatchAt(size_t pos) {
    const uint32_t cpt = codepoints_[pos].value;
    if (cpt == '\'' && pos + 1 < end_) {
      const uint32_t next = codepoints_[pos + 1].value;
      if (next == 's' || next == 't' || next == 'm' || next == 'd') return Emit(pos + 2);
      if (pos + 2 < end_) {
        const uint32_t after = codepoints_[pos + 2].value;
        if ((next == 'r' && after == 'e') || (next == 'v' && after == 'e') ||
            (next == 'l' && after == 'l')) {
          return Emit(pos + 3);
        }
      }
    }
    // " ?X+" for X in \p{L}, \p{N} and [^\s\p{L}\p{N}]: an optional space, then a run of X.
    const size_t run_start = cpt == ' ' && pos + 1 < end_ ? pos + 1 : pos;
    const uint8_t run_class = RunClass(codepoints_[run_start].classes);
    if (run_class != kWhitespace) {
      size_t run_end = run_start;
      while (run_end < end_ && RunClass(codepoints_[run_end].classes) == run_class) ++run_end;
      return Emit(run_end);
    }
    size_t whitespace_end = pos;
    while (whitespace_end < end_ && (codepoints_[whitespace_end].classes & kWhitespace)) {
      ++whitespace_end;
    }
    // \s+(?!\S): a whitespace run followed by more text leaves its last codepoint to the next
    // word (so " word" keeps its space).
    if (whitespace_end - pos > 1 && whitespace_end < end_) return Emit(whitespace_end - 1);
    if (whitespace_end > pos) return Emit(whitespace_end);
    return Emit(pos + 1);
  }

  size_t Emit(size_t end) {
    word_ends_->push_back(end < codepoints_.size() ? codepoints_[end].byte_offset : text_size_);
    return end;
  }

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
  return absl::UnimplementedError(absl::StrCat("pre-tokenizer \"", std::string(name),
                                               "\" is not supported (supported: gpt2, smollm and "
                                               "the names llama.cpp treats alike)"));
}

std::vector<std::string_view> PreTokenize(PreTokenizerKind kind, std::string_view text) {
  const std::vector<Codepoint> codepoints = DecodeCodepoints(text);
  std::vector<size_t> word_ends;
  Gpt2Splitter gpt2(codepoints, text.size(), &word_ends);
  if (kind == PreTokenizerKind::kGpt2) {
    gpt2.Split(0, codepoints.size());
  } else {
    // Each number codepoint is a word; the GPT-2 expression runs on the text between them.
    size_t piece_begin = 0;
    for (size_t i = 0; i < codepoints.size(); ++i) {
      if (!(codepoints[i].classes & kNumber)) continue;
      gpt2.Split(piece_begin, i);
      word_ends.push_back(i + 1 < codepoints.size() ? codepoints[i + 1].byte_offset : text.size());
      piece_begin = i + 1;
    }
    gpt2.Split(piece_begin, codepoints.size());
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
