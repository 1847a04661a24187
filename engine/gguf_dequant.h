// Conversion of GGUF tensor data to FP32: the engine keeps full-precision weights, so every
// supported storage type (F32, F16, BF16, Q4_0, Q4_1, Q8_0) is expanded once at load time.
#ifndef APEX4_ENGINE_GGUF_DEQUANT_H_
#define APEX4_ENGINE_GGUF_DEQUANT_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/gguf_reader.h"

namespace apex4 {

// IEEE binary16 and bfloat16 bit patterns to float (exact; subnormals, infinities, NaN kept).
float HalfToFloat(uint16_t bits);
float BFloat16ToFloat(uint16_t bits);

// Whether DequantizeToFloat handles ggml type `type`.
bool CanDequantize(uint32_t type);

// Expands `count` elements stored as ggml type `type` at `data` into `out`. `count` must be a
// whole number of the type's blocks; UNIMPLEMENTED for types the engine does not decode.
absl::Status DequantizeToFloat(uint32_t type, const uint8_t* data, int64_t count, float* out);

// The whole tensor as FP32, in ggml order (dims[0] contiguous). The error names the tensor.
absl::StatusOr<std::vector<float>> DequantizeTensor(const GgufTensorInfo& tensor);

}  // namespace apex4

#endif  // APEX4_ENGINE_GGUF_DEQUANT_H_
