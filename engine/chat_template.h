// Renders chat messages into a prompt the way the model's Jinja chat template would, for the
// template families it recognises from the template text (no Jinja interpreter): ChatML
// (SmolLM2, Qwen; with the default system turn some templates insert) and Llama-3.
#ifndef APEX4_ENGINE_CHAT_TEMPLATE_H_
#define APEX4_ENGINE_CHAT_TEMPLATE_H_

#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

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

  // The prompt text, to be tokenized with special tokens parsed and without adding BOS.
  // With `add_generation_prompt` it ends with the opening of an assistant turn.
  // INVALID_ARGUMENT for no messages or an empty role.
  absl::StatusOr<std::string> Render(absl::Span<const ChatMessage> messages,
                                     bool add_generation_prompt) const;

  ChatFormat format() const { return format_; }
  const char* format_name() const;
  // The system turn the template adds when the conversation does not start with one ("" for
  // none).
  const std::string& default_system_prompt() const { return default_system_prompt_; }

 private:
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
