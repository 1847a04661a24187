#include "engine/chat_template.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/unicode.h"

namespace apex4 {
namespace {

constexpr char kChatMlSystemOpening[] = "<|im_start|>system\n";
constexpr char kChatMlClosing[] = "<|im_end|>\n";

// The string literal that starts at source[begin] (a quote), with Jinja's escapes undone, or
// nullopt when it is not closed.
std::optional<std::string> JinjaStringLiteral(std::string_view source, size_t begin) {
  const char quote = source[begin];
  std::string value;
  for (size_t i = begin + 1; i < source.size(); ++i) {
    const char c = source[i];
    if (c == quote) return value;
    if (c != '\\' || i + 1 == source.size()) {
      value.push_back(c);
      continue;
    }
    const char escaped = source[++i];
    switch (escaped) {
      case 'n': value.push_back('\n'); break;
      case 't': value.push_back('\t'); break;
      case 'r': value.push_back('\r'); break;
      default: value.push_back(escaped); break;  // \\, \', \"
    }
  }
  return std::nullopt;
}

// A ChatML template's built-in system turn: a whole literal
// '<|im_start|>system\n...<|im_end|>\n' (as SmolLM2's and Qwen2's templates write it, for
// conversations that lack a system message).
std::string ChatMlDefaultSystemPrompt(std::string_view source) {
  for (size_t quote = source.find_first_of("'\""); quote != std::string_view::npos;
       quote = source.find_first_of("'\"", quote + 1)) {
    const std::string_view opening = kChatMlSystemOpening;
    const std::string_view closing = kChatMlClosing;
    if (source.substr(quote + 1, opening.size()) != opening) continue;
    const std::optional<std::string> literal = JinjaStringLiteral(source, quote);
    if (!literal.has_value()) return "";
    const std::string_view text = *literal;
    if (text.size() > opening.size() + closing.size() &&
        text.substr(text.size() - closing.size()) == closing) {
      return std::string(
          text.substr(opening.size(), text.size() - opening.size() - closing.size()));
    }
  }
  return "";
}

// Python's str.strip(), which Jinja's trim filter applies: Unicode White_Space and the ASCII
// information separators 0x1C-0x1F.
std::string_view StripPythonWhitespace(std::string_view text) {
  size_t begin = text.size();  // of the first and past the last codepoint that is not a space
  size_t end = 0;
  for (size_t offset = 0; offset < text.size();) {
    const size_t start = offset;
    uint32_t codepoint = kReplacementCharacter;
    if (!DecodeUtf8(text, &offset, &codepoint)) offset = start + 1;
    const bool is_space =
        (CodepointClasses(codepoint) & kWhitespace) || (codepoint >= 0x1C && codepoint <= 0x1F);
    if (is_space) continue;
    begin = std::min(begin, start);
    end = offset;
  }
  return begin < end ? text.substr(begin, end - begin) : std::string_view();
}

bool Contains(std::string_view source, std::string_view part) {
  return source.find(part) != std::string_view::npos;
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::FromJinja(std::string_view jinja_source,
                                                     std::string bos_text) {
  if (jinja_source.empty()) {
    return absl::FailedPreconditionError("the model has no chat template");
  }
  if (Contains(jinja_source, "<|im_start|>") && Contains(jinja_source, "<|im_end|>")) {
    return ChatTemplate(ChatFormat::kChatMl, ChatMlDefaultSystemPrompt(jinja_source),
                        std::move(bos_text));
  }
  // Llama 3.1 and later add dates and tool calls to the system turn; only 3.0's plain form is
  // rendered here.
  if (Contains(jinja_source, "<|start_header_id|>") && Contains(jinja_source, "<|eot_id|>") &&
      !Contains(jinja_source, "Cutting Knowledge Date")) {
    return ChatTemplate(ChatFormat::kLlama3, "", std::move(bos_text));
  }
  constexpr size_t kQuoted = 160;
  return absl::UnimplementedError(
      absl::StrCat("chat template not recognised (supported: ChatML, Llama-3); it starts \"",
                   std::string(jinja_source.substr(0, kQuoted)),
                   jinja_source.size() > kQuoted ? "...\"" : "\""));
}

const char* ChatTemplate::format_name() const {
  switch (format_) {
    case ChatFormat::kChatMl: return "chatml";
    case ChatFormat::kLlama3: return "llama3";
  }
  return "unknown";
}

absl::StatusOr<std::string> ChatTemplate::Render(absl::Span<const ChatMessage> messages,
                                                 bool add_generation_prompt) const {
  std::vector<TextRange> message_ranges;
  return RenderWithMessageRanges(messages, add_generation_prompt, &message_ranges);
}

absl::StatusOr<std::vector<int32_t>> ChatTemplate::Encode(absl::Span<const ChatMessage> messages,
                                                          bool add_generation_prompt,
                                                          const Tokenizer& tokenizer) const {
  std::vector<TextRange> message_ranges;
  absl::StatusOr<std::string> prompt =
      RenderWithMessageRanges(messages, add_generation_prompt, &message_ranges);
  if (!prompt.ok()) return prompt.status();
  return tokenizer.EncodeWithLiteralRanges(*prompt, /*add_bos=*/false, message_ranges);
}

absl::StatusOr<std::string> ChatTemplate::RenderWithMessageRanges(
    absl::Span<const ChatMessage> messages, bool add_generation_prompt,
    std::vector<TextRange>* message_ranges) const {
  if (messages.empty()) return absl::InvalidArgumentError("chat has no messages");
  for (const ChatMessage& message : messages) {
    if (message.role.empty()) return absl::InvalidArgumentError("chat message has no role");
  }
  message_ranges->clear();
  std::string prompt;
  // Appends text that came from a message, recording where it lies.
  const auto append_message_text = [&](std::string_view text) {
    message_ranges->push_back({prompt.size(), prompt.size() + text.size()});
    prompt.append(text);
  };
  switch (format_) {
    case ChatFormat::kChatMl:
      if (!default_system_prompt_.empty() && messages.front().role != "system") {
        absl::StrAppend(&prompt, kChatMlSystemOpening, default_system_prompt_, kChatMlClosing);
      }
      for (const ChatMessage& message : messages) {
        prompt.append("<|im_start|>");
        append_message_text(message.role);
        prompt.append("\n");
        append_message_text(message.content);
        prompt.append(kChatMlClosing);
      }
      if (add_generation_prompt) absl::StrAppend(&prompt, "<|im_start|>assistant\n");
      break;
    case ChatFormat::kLlama3:
      prompt = bos_text_;
      for (const ChatMessage& message : messages) {
        prompt.append("<|start_header_id|>");
        append_message_text(message.role);
        prompt.append("<|end_header_id|>\n\n");
        // The template trims each message (Jinja's trim: leading and trailing whitespace).
        append_message_text(StripPythonWhitespace(message.content));
        prompt.append("<|eot_id|>");
      }
      if (add_generation_prompt) {
        absl::StrAppend(&prompt, "<|start_header_id|>assistant<|end_header_id|>\n\n");
      }
      break;
  }
  return prompt;
}

}  // namespace apex4
