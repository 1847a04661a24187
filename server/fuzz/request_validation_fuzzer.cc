// libFuzzer target: request validation on arbitrary wire bytes, parsed as a GenerateRequest and
// as a TokenizeRequest the way gRPC would hand them to the service. Checked property: a request
// that validates has no field that the later stages assume was checked (ids in the vocabulary,
// valid UTF-8 text within the limits, sane sampling parameters).
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "apex4/v1/generation.pb.h"
#include "engine/unicode.h"
#include "server/request_validation.h"

namespace {

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

void CheckAccepted(const apex4::v1::GenerateRequest& request, const apex4::RequestLimits& limits) {
  for (int32_t id : request.token_ids().ids()) Check(id >= 0 && id < limits.vocab_size);
  Check(request.text().size() <= limits.max_prompt_bytes && apex4::IsValidUtf8(request.text()));
  size_t chat_bytes = 0;
  for (const auto& message : request.chat().messages()) {
    Check(apex4::IsValidUtf8(message.content()));
    chat_bytes += message.content().size();
  }
  Check(chat_bytes <= limits.max_prompt_bytes);
  const auto& sampling = request.sampling();
  Check(sampling.max_tokens() >= 0 && sampling.max_tokens() <= limits.max_tokens_limit);
  Check(std::isfinite(sampling.temperature()) && sampling.temperature() >= 0);
  Check(sampling.top_p() >= 0 && sampling.top_p() <= 1);
  Check(sampling.top_k() >= 0);
  Check(sampling.stop_size() <= limits.max_stop_strings);
  for (const std::string& stop : sampling.stop()) {
    Check(!stop.empty() && stop.size() <= limits.max_stop_string_bytes && apex4::IsValidUtf8(stop));
  }
  Check(apex4::IsValidUtf8(request.request_id()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  apex4::RequestLimits limits;
  limits.vocab_size = 49152;
  limits.max_prompt_bytes = 4096;  // small limits so the fuzzer reaches them
  limits.max_chat_messages = 8;
  limits.max_stop_strings = 4;
  limits.max_stop_string_bytes = 16;
  limits.max_request_id_bytes = 32;

  apex4::v1::GenerateRequest generate;
  if (generate.ParseFromArray(data, static_cast<int>(size))) {
    if (apex4::ValidateGenerateRequest(generate, limits).ok()) CheckAccepted(generate, limits);
  }
  apex4::v1::TokenizeRequest tokenize;
  if (tokenize.ParseFromArray(data, static_cast<int>(size))) {
    if (apex4::ValidateTokenizeRequest(tokenize, limits).ok()) {
      Check(apex4::IsValidUtf8(tokenize.text()) &&
            tokenize.text().size() <= limits.max_prompt_bytes);
    }
  }
  return 0;
}
