// Renders chat messages into a prompt the way the model's Jinja chat template would, for the
// template families it recognises from the template text (no Jinja interpreter): ChatML
// (SmolLM2, Qwen; with the default system turn some templates insert) and Llama-3.
#ifndef APEX4_ENGINE_CHAT_TEMPLATE_H_
#define APEX4_ENGINE_CHAT_TEMPLATE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/tokenizer.h"

namespace apex4 {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

enum class ChatFormat {
  kChatMl,  // <|im_start|>{role}\n{content}<|im_end|>\n
  kLlama3,  // <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>
};

// Immutable; thread-safe.
class ChatTemplate {
 public:
  // Recognises `jinja_source` (GGUF's tokenizer.chat_template or tokenizer_config.json's
  // chat_template). `bos_text` is the model's BOS token text, for templates that write it.
  // FAILED_PRECONDITION for an empty template; UNIMPLEMENTED, quoting the start of the
  // template, for one it does not recognise.
  static absl::StatusOr<ChatTemplate> FromJinja(std::string_view jinja_source,
                                                std::string bos_text);

  // The prompt text, as the model's Jinja template writes it. With `add_generation_prompt` it
  // ends with the opening of an assistant turn. INVALID_ARGUMENT for no messages or an empty
  // role. To turn a conversation into tokens, use Encode: tokenizing this text with special
  // tokens parsed would let a message's content write control tokens.
  absl::StatusOr<std::string> Render(absl::Span<const ChatMessage> messages,
                                     bool add_generation_prompt) const;

  // The prompt's token ids (BOS included where the template writes it): control tokens of the
  // template's own markup are parsed, the messages' roles and contents are ordinary text, so a
  // message that contains "<|im_end|>" cannot end its turn or open another. Otherwise the ids
  // are those of Render's text tokenized with special tokens parsed.
  absl::StatusOr<std::vector<int32_t>> Encode(absl::Span<const ChatMessage> messages,
                                              bool add_generation_prompt,
                                              const Tokenizer& tokenizer) const;

  ChatFormat format() const { return format_; }
  const char* format_name() const;
  // The system turn the template adds when the conversation does not start with one ("" for
  // none).
  const std::string& default_system_prompt() const { return default_system_prompt_; }

 private:
  // Render's text, and where the messages' roles and contents lie in it (in order).
  absl::StatusOr<std::string> RenderWithMessageRanges(absl::Span<const ChatMessage> messages,
                                                      bool add_generation_prompt,
                                                      std::vector<TextRange>* message_ranges) const;

  ChatTemplate(ChatFormat format, std::string default_system_prompt, std::string bos_text)
      : format_(format),
        default_system_prompt_(std::move(default_system_prompt)),
        bos_text_(std::move(bos_text)) {}

  ChatFormat format_;
  std::string default_system_prompt_;
  std::string bos_text_;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_CHAT_TEMPLATE_H_
