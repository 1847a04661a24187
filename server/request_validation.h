// Checks every field of incoming requests before any work is done, so that bad input gets
// INVALID_ARGUMENT (malformed) or OUT_OF_RANGE (beyond this server's limits) with a message that
// names the field, and never reaches the tokenizer, the scheduler or the engine.
#ifndef APEX4_SERVER_REQUEST_VALIDATION_H_
#define APEX4_SERVER_REQUEST_VALIDATION_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "apex4/v1/generation.pb.h"

namespace apex4 {

struct RequestLimits {
  int32_t vocab_size = 0;
  int32_t max_tokens_limit = 2048;
  size_t max_prompt_bytes = 256 * 1024;  // text, or all chat contents together
  int max_chat_messages = 256;
  int max_stop_strings = 16;
  size_t max_stop_string_bytes = 256;
  size_t max_request_id_bytes = 256;
};

absl::Status ValidateGenerateRequest(const v1::GenerateRequest& request,
                                     const RequestLimits& limits);
absl::Status ValidateTokenizeRequest(const v1::TokenizeRequest& request,
                                     const RequestLimits& limits);

}  // namespace apex4

#endif  // APEX4_SERVER_REQUEST_VALIDATION_H_
