#include "engine/gguf_dequant.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "engine/test_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

using ::testing::HasSubstr;

constexpr uint16_t kHalfOne = 0x3C00;
constexpr uint16_t kHalfQuarter = 0x3400;
constexpr uint16_t kHalfMinusOne = 0xBC00;
constexpr uint16_t kHalfTwo = 0x4000;

TEST(HalfToFloatTest, DecodesHandPickedBitPatterns) {
  EXPECT_EQ(HalfToFloat(kHalfOne), 1.0f);
  EXPECT_EQ(HalfToFloat(0xC000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x3555), 0.333251953125f);   // nearest half to 1/3
  EXPECT_EQ(HalfToFloat(0x7BFF), 65504.0f);          // largest finite half
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x03FF), 1023 * std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7E00)));
  EXPECT_TRUE(std::signbit(HalfToFloat(0x8000)));
}

TEST(BFloat16ToFloatTest, KeepsTheTopSixteenBits) {
  EXPECT_EQ(BFloat16ToFloat(0x3F80), 1.0f);
  EXPECT_EQ(BFloat16ToFloat(0xC2F7), -123.5f);  // 0xC2F70000
  EXPECT_EQ(BFloat16ToFloat(0x0000), 0.0f);
}

TEST(DequantizeTest, Q4_0Block) {
  BlockQ4_0 block;
  block.d = kHalfQuarter;
  for (int j = 0; j < 16; ++j) block.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  float out[32];
  ASSERT_TRUE(DequantizeToFloat(static_cast<uint32_t>(GgmlType::kQ4_0),
                                reinterpret_cast<const uint8_t*>(&block), 32, out)
                  .ok());
  // x = d * (q - 8): low nibbles j -> elements 0..15, high nibbles 15 - j -> elements 16..31.
  EXPECT_EQ(out[0], -2.0f);
  EXPECT_EQ(out[8], 0.0f);
  EXPECT_EQ(out[15], 1.75f);
  EXPECT_EQ(out[16], 1.75f);
  EXPECT_EQ(out[31], -2.0f);
}

TEST(DequantizeTest, Q4_1Block) {
  BlockQ4_1 block;
  block.d = kHalfQuarter;
  block.m = kHalfMinusOne;
  for (int j = 0; j < 16; ++j) block.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  float out[32];
  ASSERT_TRUE(DequantizeToFloat(static_cast<uint32_t>(GgmlType::kQ4_1),
                                reinterpret_cast<const uint8_t*>(&block), 32, out)
                  .ok());
  // x = d * q + m.
  EXPECT_EQ(out[0], -1.0f);
  EXPECT_EQ(out[4], 0.0f);
  EXPECT_EQ(out[15], 2.75f);
  EXPECT_EQ(out[16], 2.75f);
  EXPECT_EQ(out[31], -1.0f);
}

TEST(DequantizeTest, Q8_0BlocksAndHalfFloats) {
  BlockQ8_0 blocks[2];
  blocks[0].d = kHalfTwo;
  blocks[1].d = kHalfMinusOne;
  for (int j = 0; j < 32; ++j) {
    blocks[0].qs[j] = static_cast<int8_t>(j - 16);
    blocks[1].qs[j] = static_cast<int8_t>(j == 0 ? -128 : 127);
  }
  float out[64];
  ASSERT_TRUE(DequantizeToFloat(static_cast<uint32_t>(GgmlType::kQ8_0),
                                reinterpret_cast<const uint8_t*>(blocks), 64, out)
                  .ok());
  EXPECT_EQ(out[0], -32.0f);
  EXPECT_EQ(out[31], 30.0f);
  EXPECT_EQ(out[32], 128.0f);
  EXPECT_EQ(out[63], -127.0f);

  const uint16_t halves[2] = {kHalfTwo, 0xC000};
  ASSERT_TRUE(DequantizeToFloat(static_cast<uint32_t>(GgmlType::kF16),
                                reinterpret_cast<const uint8_t*>(halves), 2, out)
                  .ok());
  EXPECT_EQ(out[0], 2.0f);
  EXPECT_EQ(out[1], -2.0f);
}

TEST(DequantizeTest, RefusesUnsupportedTypesAndPartialBlocks) {
  const uint8_t bytes[256] = {};
  float out[256];
  absl::Status k_quant = DequantizeToFloat(12, bytes, 256, out);
  EXPECT_EQ(k_quant.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(k_quant.message()), HasSubstr("q4_k"));
  EXPECT_EQ(DequantizeToFloat(static_cast<uint32_t>(GgmlType::kQ4_1), bytes, 33, out).code(),
            absl::StatusCode::kInvalidArgument);
}

// Expected values were computed with gguf-py's gguf.quants.dequantize on the same file.
TEST(DequantizeTest, MatchesGgufPyOnTheRealModel) {
  auto reader = GgufReader::Open(DefaultModelPath());
  ASSERT_TRUE(reader.ok()) << reader.status();
  struct Expected {
    const char* name;
    float first[3];
    float last[2];
    double sum;
  };
  const Expected expected[] = {
      {"token_embd.weight", {-0.10654449462890625f, 0.032978057861328125f, 0.048198699951171875f},
       {-0.11989402770996094f, -0.0417022705078125f}, -15353.04449415207},
      {"blk.0.attn_q.weight", {-0.0963134765625f, 0.1573486328125f, -0.0963134765625f},
       {-0.14984130859375f, -0.255859375f}, 59.22322082519531},
      {"blk.29.ffn_down.weight", {-0.2733154296875f, 0.186279296875f, 0.186279296875f},
       {-0.08984375f, 0.056640625f}, 49.83570861816406},
  };
  for (const Expected& e : expected) {
    SCOPED_TRACE(e.name);
    auto tensor = (*reader)->FindTensor(e.name);
    ASSERT_TRUE(tensor.ok());
    auto values = DequantizeTensor(**tensor);
    ASSERT_TRUE(values.ok()) << values.status();
    ASSERT_EQ(values->size(), (*tensor)->num_elements());
    for (int i = 0; i < 3; ++i) EXPECT_EQ((*values)[i], e.first[i]);
    EXPECT_EQ((*values)[values->size() - 2], e.last[0]);
    EXPECT_EQ(values->back(), e.last[1]);
    const double sum = std::accumulate(values->begin(), values->end(), 0.0);
    EXPECT_NEAR(sum, e.sum, 1e-6 * std::abs(e.sum));
  }
}

}  // namespace
}  // namespace apex4
