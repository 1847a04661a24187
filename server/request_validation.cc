#include "server/request_validation.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"
#include "engine/unicode.h"

namespace apex4 {
namespace {

absl::Status CheckText(absl::string_view field, const std::string& text, size_t max_bytes) {
  if (text.size() > max_bytes) {
    return absl::OutOfRangeError(
        absl::StrCat(field, ": ", text.size(), " bytes exceed the limit of ", max_bytes));
  }
  if (!IsValidUtf8(text))
    return absl::InvalidArgumentError(absl::StrCat(field, ": not valid UTF-8"));
  return absl::OkStatus();
}

absl::Status CheckChat(const v1::ChatMessages& chat, const RequestLimits& limits) {
  if (chat.messages().empty()) return absl::InvalidArgumentError("chat.messages: empty");
  if (chat.messages_size() > limits.max_chat_messages) {
    return absl::OutOfRangeError(absl::StrCat("chat.messages: ", chat.messages_size(),
                                              " messages exceed the limit of ",
                                              limits.max_chat_messages));
  }
  size_t total_bytes = 0;
  for (int i = 0; i < chat.messages_size(); ++i) {
    const v1::ChatMessage& message = chat.messages(i);
    const std::string field = absl::StrCat("chat.messages[", i, "]");
    if (message.role() != "system" && message.role() != "user" && message.role() != "assistant") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".role: must be \"system\", \"user\" or \"assistant\""));
    }
    RETURN_IF_ERROR(
        CheckText(absl::StrCat(field, ".content"), message.content(), limits.max_prompt_bytes));
    total_bytes += message.content().size();
  }
  if (total_bytes > limits.max_prompt_bytes) {
    return absl::OutOfRangeError(absl::StrCat("chat.messages: ", total_bytes,
                                              " bytes of content exceed the limit of ",
                                              limits.max_prompt_bytes));
  }
  return absl::OkStatus();
}

absl::Status CheckTokenIds(const v1::TokenIds& token_ids, const RequestLimits& limits) {
  if (token_ids.ids().empty()) return absl::InvalidArgumentError("token_ids.ids: empty");
  for (int i = 0; i < token_ids.ids_size(); ++i) {
    const int32_t id = token_ids.ids(i);
    if (id < 0 || id >= limits.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token_ids.ids[", i, "]: ", id,
                                                     " is outside the vocabulary [0, ",
                                                     limits.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSampling(const v1::SamplingParams& sampling, const RequestLimits& limits) {
  if (sampling.max_tokens() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.max_tokens: ", sampling.max_tokens(), " is negative"));
  }
  if (sampling.max_tokens() > limits.max_tokens_limit) {
    return absl::OutOfRangeError(absl::StrCat("sampling.max_tokens: ", sampling.max_tokens(),
                                              " exceeds the limit of ", limits.max_tokens_limit));
  }
  if (!std::isfinite(sampling.temperature()) || sampling.temperature() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.temperature: ", sampling.temperature(),
                                                   " is not a finite number >= 0"));
  }
  if (!(sampling.top_p() >= 0 && sampling.top_p() <= 1)) {  // also rejects NaN
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_p: ", sampling.top_p(), " is not in [0, 1] (0 means off)"));
  }
  if (sampling.top_k() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_k: ", sampling.top_k(), " is negative (0 means off)"));
  }
  if (sampling.stop_size() > limits.max_stop_strings) {
    return absl::OutOfRangeError(absl::StrCat("sampling.stop: ", sampling.stop_size(),
                                              " strings exceed the limit of ",
                                              limits.max_stop_strings));
  }
  for (int i = 0; i < sampling.stop_size(); ++i) {
    const std::string field = absl::StrCat("sampling.stop[", i, "]");
    if (sampling.stop(i).empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": empty"));
    RETURN_IF_ERROR(CheckText(field, sampling.stop(i), limits.max_stop_string_bytes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateGenerateRequest(const v1::GenerateRequest& request,
                                     const RequestLimits& limits) {
  switch (request.input_case()) {
    case v1::GenerateRequest::kText:
      if (request.text().empty()) return absl::InvalidArgumentError("text: empty prompt");
      RETURN_IF_ERROR(CheckText("text", request.text(), limits.max_prompt_bytes));
      break;
    case v1::GenerateRequest::kTokenIds:
      RETURN_IF_ERROR(CheckTokenIds(request.token_ids(), limits));
      break;
    case v1::GenerateRequest::kChat: RETURN_IF_ERROR(CheckChat(request.chat(), limits)); break;
    case v1::GenerateRequest::INPUT_NOT_SET:
      return absl::InvalidArgumentError("input: one of text, token_ids or chat is required");
  }
  RETURN_IF_ERROR(CheckSampling(request.sampling(), limits));
  return CheckText("request_id", request.request_id(), limits.max_request_id_bytes);
}

absl::Status ValidateTokenizeRequest(const v1::TokenizeRequest& request,
                                     const RequestLimits& limits) {
  switch (request.input_case()) {
    case v1::TokenizeRequest::kText:
      return CheckText("text", request.text(), limits.max_prompt_bytes);
    case v1::TokenizeRequest::kChat: return CheckChat(request.chat(), limits);
    case v1::TokenizeRequest::INPUT_NOT_SET:
      return absl::InvalidArgumentError("input: one of text or chat is required");
  }
  return absl::InvalidArgumentError("input: unknown kind");
}

}  // namespace apex4
