#include "server/request_validation.h"

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace apex4 {
namespace {

RequestLimits TestLimits() {
  RequestLimits limits;
  limits.vocab_size = 100;
  limits.max_tokens_limit = 50;
  limits.max_prompt_bytes = 64;
  limits.max_stop_strings = 2;
  limits.max_stop_string_bytes = 8;
  return limits;
}

v1::GenerateRequest ValidRequest() {
  v1::GenerateRequest request;
  request.set_text("Hello");
  request.mutable_sampling()->set_max_tokens(10);
  return request;
}

struct BadCase {
  const char* name;
  std::function<void(v1::GenerateRequest&)> mutate;
  absl::StatusCode code;
  const char* field;  // must appear in the message
};

TEST(RequestValidationTest, AcceptsValidRequests) {
  const RequestLimits limits = TestLimits();
  EXPECT_TRUE(ValidateGenerateRequest(ValidRequest(), limits).ok());
  v1::GenerateRequest ids = ValidRequest();
  ids.mutable_token_ids()->add_ids(0);
  ids.mutable_token_ids()->add_ids(99);
  EXPECT_TRUE(ValidateGenerateRequest(ids, limits).ok());
  v1::GenerateRequest chat = ValidRequest();
  auto* message = chat.mutable_chat()->add_messages();
  message->set_role("user");
  message->set_content("caf\xC3\xA9");
  chat.mutable_sampling()->set_temperature(0.7f);
  chat.mutable_sampling()->set_top_p(1.0f);
  chat.mutable_sampling()->set_top_k(40);
  chat.mutable_sampling()->add_stop("\n");
  chat.mutable_sampling()->set_max_tokens(50);
  EXPECT_TRUE(ValidateGenerateRequest(chat, limits).ok());
}

TEST(RequestValidationTest, RejectsEachBadFieldNamingIt) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const BadCase cases[] = {
      {"no input", [](auto& r) { r.clear_input(); }, absl::StatusCode::kInvalidArgument, "input"},
      {"empty text", [](auto& r) { r.set_text(""); }, absl::StatusCode::kInvalidArgument, "text"},
      {"oversized text", [](auto& r) { r.set_text(std::string(65, 'a')); },
       absl::StatusCode::kOutOfRange, "text"},
      {"invalid utf8", [](auto& r) { r.set_text("a\xC3("); }, absl::StatusCode::kInvalidArgument,
       "text"},
      {"empty ids", [](auto& r) { r.mutable_token_ids(); }, absl::StatusCode::kInvalidArgument,
       "token_ids.ids"},
      {"id past vocab", [](auto& r) { r.mutable_token_ids()->add_ids(100); },
       absl::StatusCode::kInvalidArgument, "token_ids.ids[0]"},
      {"negative id", [](auto& r) { r.mutable_token_ids()->add_ids(-1); },
       absl::StatusCode::kInvalidArgument, "token_ids.ids[0]"},
      {"empty chat", [](auto& r) { r.mutable_chat(); }, absl::StatusCode::kInvalidArgument,
       "chat.messages"},
      {"bad role",
       [](auto& r) {
         auto* m = r.mutable_chat()->add_messages();
         m->set_role("robot");
         m->set_content("hi");
       },
       absl::StatusCode::kInvalidArgument, "chat.messages[0].role"},
      {"negative max_tokens", [](auto& r) { r.mutable_sampling()->set_max_tokens(-1); },
       absl::StatusCode::kInvalidArgument, "sampling.max_tokens"},
      {"max_tokens over limit", [](auto& r) { r.mutable_sampling()->set_max_tokens(51); },
       absl::StatusCode::kOutOfRange, "sampling.max_tokens"},
      {"NaN temperature", [nan](auto& r) { r.mutable_sampling()->set_temperature(nan); },
       absl::StatusCode::kInvalidArgument, "sampling.temperature"},
      {"negative temperature", [](auto& r) { r.mutable_sampling()->set_temperature(-0.5f); },
       absl::StatusCode::kInvalidArgument, "sampling.temperature"},
      {"infinite temperature", [](auto& r) { r.mutable_sampling()->set_temperature(INFINITY); },
       absl::StatusCode::kInvalidArgument, "sampling.temperature"},
      {"top_p above 1", [](auto& r) { r.mutable_sampling()->set_top_p(1.5f); },
       absl::StatusCode::kInvalidArgument, "sampling.top_p"},
      {"negative top_p", [](auto& r) { r.mutable_sampling()->set_top_p(-0.1f); },
       absl::StatusCode::kInvalidArgument, "sampling.top_p"},
      {"NaN top_p", [nan](auto& r) { r.mutable_sampling()->set_top_p(nan); },
       absl::StatusCode::kInvalidArgument, "sampling.top_p"},
      {"negative top_k", [](auto& r) { r.mutable_sampling()->set_top_k(-3); },
       absl::StatusCode::kInvalidArgument, "sampling.top_k"},
      {"too many stops",
       [](auto& r) {
         for (int i = 0; i < 3; ++i) r.mutable_sampling()->add_stop("x");
       },
       absl::StatusCode::kOutOfRange, "sampling.stop"},
      {"long stop", [](auto& r) { r.mutable_sampling()->add_stop("123456789"); },
       absl::StatusCode::kOutOfRange, "sampling.stop[0]"},
      {"empty stop", [](auto& r) { r.mutable_sampling()->add_stop(""); },
       absl::StatusCode::kInvalidArgument, "sampling.stop[0]"},
  };
  const RequestLimits limits = TestLimits();
  for (const BadCase& bad : cases) {
    v1::GenerateRequest request = ValidRequest();
    bad.mutate(request);
    absl::Status status = ValidateGenerateRequest(request, limits);
    EXPECT_EQ(status.code(), bad.code) << bad.name << ": " << status;
    EXPECT_EQ(status.message().rfind(std::string(bad.field) + ":", 0), 0u)
        << bad.name << ": " << status.message();
  }
}

TEST(RequestValidationTest, TokenizeNeedsInputButAcceptsEmptyText) {
  const RequestLimits limits = TestLimits();
  v1::TokenizeRequest request;
  EXPECT_EQ(ValidateTokenizeRequest(request, limits).code(), absl::StatusCode::kInvalidArgument);
  request.set_text("");
  EXPECT_TRUE(ValidateTokenizeRequest(request, limits).ok());
  request.set_text("\xFF");
  EXPECT_EQ(ValidateTokenizeRequest(request, limits).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace apex4
