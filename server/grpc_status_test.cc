#include "server/grpc_status.h"

#include <string>

#include "gtest/gtest.h"

namespace apex4 {
namespace {

TEST(GrpcStatusTest, OkStaysOk) { EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok()); }

TEST(GrpcStatusTest, KeepsCodeAndShortMessage) {
  grpc::Status status =
      ToGrpcStatus(absl::InvalidArgumentError("sampling.top_p: 2 is not in [0, 1]"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "sampling.top_p: 2 is not in [0, 1]");
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("x")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpcStatus(absl::DeadlineExceededError("x")).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST(GrpcStatusTest, CapsLongMessagesOnACharacterBoundary) {
  // 'é' is two bytes; after two ASCII bytes a cut at an odd length lands inside one.
  std::string message = "xx";
  while (message.size() < 4000) message += "\xC3\xA9";
  grpc::Status status = ToGrpcStatus(absl::InternalError(message));
  const std::string& capped = status.error_message();
  ASSERT_LE(capped.size(), kMaxGrpcStatusMessageBytes);
  EXPECT_EQ(capped.size(), kMaxGrpcStatusMessageBytes - 1);
  ASSERT_EQ(capped.substr(capped.size() - 3), "...");
  // The byte before the ellipsis ends a complete 'é'.
  EXPECT_EQ(static_cast<unsigned char>(capped[capped.size() - 4]), 0xA9);
}

TEST(GrpcStatusTest, NamesCodes) {
  EXPECT_STREQ(GrpcCodeName(grpc::StatusCode::OK), "OK");
  EXPECT_STREQ(GrpcCodeName(grpc::StatusCode::RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
}

}  // namespace
}  // namespace apex4
