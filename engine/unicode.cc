#include "engine/unicode.h"

#include <algorithm>
#include <iterator>

namespace apex4 {
namespace {

struct CodepointRange {
  uint32_t first;
  uint32_t last;
  uint8_t classes;
};

constexpr CodepointRange kCodepointRanges[] = {
#include "engine/unicode_ranges.inc"
};

bool IsContinuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

// Number of bytes of the sequence that `lead` starts, or 0 if it cannot start one.
size_t SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// The second byte's range is narrower after some lead bytes: it rules out overlong forms,
// surrogates and values past U+10FFFF.
bool SecondByteAllowed(unsigned char lead, unsigned char second) {
  switch (lead) {
    case 0xE0: return second >= 0xA0 && second <= 0xBF;
    case 0xED: return second >= 0x80 && second <= 0x9F;
    case 0xF0: return second >= 0x90 && second <= 0xBF;
    case 0xF4: return second >= 0x80 && second <= 0x8F;
    default: return IsContinuation(second);
  }
}

// Whether `bytes` (all of them) is a valid start of a sequence, complete or not.
bool IsValidPrefix(std::string_view bytes, size_t length) {
  const auto lead = static_cast<unsigned char>(bytes[0]);
  if (bytes.size() > 1 && !SecondByteAllowed(lead, static_cast<unsigned char>(bytes[1]))) {
    return false;
  }
  for (size_t i = 2; i < bytes.size() && i < length; ++i) {
    if (!IsContinuation(static_cast<unsigned char>(bytes[i]))) return false;
  }
  return true;
}

// Bytes of the invalid sequence at the start of `rest`: its maximal subpart (the longest start
// of a valid sequence, at least one byte), which becomes one U+FFFD as in Python and browsers.
size_t InvalidSequenceLength(std::string_view rest) {
  const auto lead = static_cast<unsigned char>(rest[0]);
  const size_t length = SequenceLength(lead);
  if (length == 0 || rest.size() < 2 ||
      !SecondByteAllowed(lead, static_cast<unsigned char>(rest[1]))) {
    return 1;
  }
  size_t valid = 2;
  while (valid < length && valid < rest.size() &&
         IsContinuation(static_cast<unsigned char>(rest[valid]))) {
    ++valid;
  }
  return valid;
}

}  // namespace

bool DecodeUtf8(std::string_view text, size_t* offset, uint32_t* codepoint) {
  if (*offset >= text.size()) return false;
  const std::string_view rest = text.substr(*offset);
  const auto lead = static_cast<unsigned char>(rest[0]);
  const size_t length = SequenceLength(lead);
  if (length == 0 || rest.size() < length || !IsValidPrefix(rest.substr(0, length), length)) {
    return false;
  }
  uint32_t value = length == 1 ? lead : lead & (0x7F >> length);
  for (size_t i = 1; i < length; ++i) {
    value = (value << 6) | (static_cast<unsigned char>(rest[i]) & 0x3F);
  }
  *codepoint = value;
  *offset += length;
  return true;
}

bool IsValidUtf8(std::string_view text) {
  size_t offset = 0;
  uint32_t codepoint;
  while (offset < text.size()) {
    if (!DecodeUtf8(text, &offset, &codepoint)) return false;
  }
  return true;
}

void AppendUtf8(uint32_t codepoint, std::string* out) {
  if (codepoint < 0x80) {
    out->push_back(static_cast<char>(codepoint));
  } else if (codepoint < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (codepoint >> 6)));
    out->push_back(static_cast<char>(0x80 | (codepoint & 0x3F)));
  } else if (codepoint < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (codepoint >> 12)));
    out->push_back(static_cast<char>(0x80 | ((codepoint >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (codepoint & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (codepoint >> 18)));
    out->push_back(static_cast<char>(0x80 | ((codepoint >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((codepoint >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (codepoint & 0x3F)));
  }
}

size_t IncompleteUtf8SuffixLength(std::string_view text) {
  // A sequence is at most 4 bytes, so an incomplete one is at most the last 3.
  for (size_t suffix = std::min<size_t>(3, text.size()); suffix > 0; --suffix) {
    const std::string_view tail = text.substr(text.size() - suffix);
    const size_t length = SequenceLength(static_cast<unsigned char>(tail[0]));
    if (length > suffix && IsValidPrefix(tail, length)) return suffix;
  }
  return 0;
}

std::string SanitizeUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t offset = 0;
  while (offset < text.size()) {
    const size_t start = offset;
    uint32_t codepoint;
    if (DecodeUtf8(text, &offset, &codepoint)) {
      out.append(text.substr(start, offset - start));
    } else {
      AppendUtf8(kReplacementCharacter, &out);
      offset += InvalidSequenceLength(text.substr(offset));
    }
  }
  return out;
}

uint8_t CodepointClasses(uint32_t codepoint) {
  const auto* end = std::end(kCodepointRanges);
  const auto* range =
      std::lower_bound(std::begin(kCodepointRanges), end, codepoint,
                       [](const CodepointRange& r, uint32_t value) { return r.last < value; });
  return range != end && range->first <= codepoint ? range->classes : 0;
}

}  // namespace apex4
