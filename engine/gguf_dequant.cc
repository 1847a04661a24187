#include "engine/gguf_dequant.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/ggml_types.h"

namespace apex4 {
namespace {

float BitsToFloat(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

template <typename Block>
const Block* Blocks(const uint8_t* data) {
  return reinterpret_cast<const Block*>(data);
}

// Q4_0 and Q4_1 share the nibble order: element j of a block is the low nibble of qs[j] for
// j < 16 and the high nibble of qs[j - 16] otherwise.
template <typename Block, typename ValueFn>
void DequantizeNibbles(const Block& block, ValueFn value, float* out) {
  for (int j = 0; j < kQuantBlockSize / 2; ++j) {
    out[j] = value(block.qs[j] & 0x0F);
    out[j + kQuantBlockSize / 2] = value(block.qs[j] >> 4);
  }
}

void DequantizeQ4_0(const uint8_t* data, int64_t num_blocks, float* out) {
  for (int64_t b = 0; b < num_blocks; ++b, out += kQuantBlockSize) {
    const BlockQ4_0& block = Blocks<BlockQ4_0>(data)[b];
    const float d = HalfToFloat(block.d);
    DequantizeNibbles(block, [d](int q) { return d * static_cast<float>(q - 8); }, out);
  }
}

void DequantizeQ4_1(const uint8_t* data, int64_t num_blocks, float* out) {
  for (int64_t b = 0; b < num_blocks; ++b, out += kQuantBlockSize) {
    const BlockQ4_1& block = Blocks<BlockQ4_1>(data)[b];
    const float d = HalfToFloat(block.d);
    const float m = HalfToFloat(block.m);
    DequantizeNibbles(block, [d, m](int q) { return d * static_cast<float>(q) + m; }, out);
  }
}

void DequantizeQ8_0(const uint8_t* data, int64_t num_blocks, float* out) {
  for (int64_t b = 0; b < num_blocks; ++b, out += kQuantBlockSize) {
    const BlockQ8_0& block = Blocks<BlockQ8_0>(data)[b];
    const float d = HalfToFloat(block.d);
    for (int j = 0; j < kQuantBlockSize; ++j) out[j] = d * static_cast<float>(block.qs[j]);
  }
}

template <typename ConvertFn>
void ConvertHalves(const uint8_t* data, int64_t count, ConvertFn convert, float* out) {
  for (int64_t i = 0; i < count; ++i) {
    uint16_t bits;
    std::memcpy(&bits, data + 2 * i, sizeof(bits));
    out[i] = convert(bits);
  }
}

}  // namespace

float HalfToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1F;
  const uint32_t mantissa = bits & 0x3FF;
  if (exponent == 0x1F) return BitsToFloat(sign | 0x7F800000 | (mantissa << 13));  // inf, NaN
  if (exponent != 0) return BitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa * 2^-24, exact in float.
  const float magnitude = static_cast<float>(mantissa) * BitsToFloat(0x33800000);
  return sign != 0 ? -magnitude : magnitude;
}

float BFloat16ToFloat(uint16_t bits) { return BitsToFloat(static_cast<uint32_t>(bits) << 16); }

bool CanDequantize(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_1:
    case GgmlType::kQ8_0:
      return true;
  }
  return false;
}

absl::Status DequantizeToFloat(uint32_t type, const uint8_t* data, int64_t count, float* out) {
  if (!CanDequantize(type)) {
    return absl::UnimplementedError(
        absl::StrCat("cannot dequantize ggml type ", GgmlTypeName(type), " (", type,
                     "); supported: f32, f16, bf16, q4_0, q4_1, q8_0"));
  }
  const int64_t block_size = GgmlTypeTraitsFor(type)->block_size;
  if (count < 0 || count % block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("element count ", count, " is not a multiple of the ",
                                                   GgmlTypeName(type), " block size ", block_size));
  }
  if (count == 0) return absl::OkStatus();  // `out` may be null (an empty vector's data())
  const int64_t num_blocks = count / block_size;
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32:
      std::memcpy(out, data, count * sizeof(float));
      break;
    case GgmlType::kF16:
      ConvertHalves(data, count, HalfToFloat, out);
      break;
    case GgmlType::kBF16:
      ConvertHalves(data, count, BFloat16ToFloat, out);
      break;
    case GgmlType::kQ4_0:
      DequantizeQ4_0(data, num_blocks, out);
      break;
    case GgmlType::kQ4_1:
      DequantizeQ4_1(data, num_blocks, out);
      break;
    case GgmlType::kQ8_0:
      DequantizeQ8_0(data, num_blocks, out);
      break;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> DequantizeTensor(const GgufTensorInfo& tensor) {
  std::vector<float> values(tensor.num_elements());
  const absl::Status status =
      DequantizeToFloat(tensor.type, tensor.data, tensor.num_elements(), values.data());
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("tensor '", tensor.name, "': ", status.message()));
  }
  return values;
}

}  // namespace apex4
