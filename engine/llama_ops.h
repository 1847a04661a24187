// The element-wise and per-row operations of a LLaMA block on the CPU, in float with the
// reductions llama.cpp does in double: RMSNorm, rotary position embedding, SwiGLU's gate, and
// the rounding of a 4-bit KV cache.
#ifndef APEX4_ENGINE_LLAMA_OPS_H_
#define APEX4_ENGINE_LLAMA_OPS_H_

#include <cstdint>

#include "absl/status/status.h"

namespace apex4 {

// y[r] = x[r] / sqrt(mean(x[r]²) + eps) * weight, for `rows` rows of `dim` floats. y may be x.
void RmsNorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps,
             float* y);

// Rotates each head of one token's vector in place by its position, llama.cpp's "normal" RoPE:
// dimensions (2i, 2i+1) of a head turn by position · theta^(-2i / head_dim). GGUF files store
// Q and K rows in the order this expects (convert_hf_to_gguf permutes them from Hugging Face's
// rotate-half order).
void ApplyRope(float* x, int num_heads, int head_dim, int32_t position, float theta);

// gate[i] = silu(gate[i]) · up[i] = gate[i] / (1 + e^-gate[i]) · up[i].
void SiluMul(float* gate, const float* up, int64_t n);

// x[i] += y[i].
void AddInPlace(float* x, const float* y, int64_t n);

// What a 4-bit KV cache keeps of `rows` rows of `dim` floats (a row: one token's keys, or
// values, of one KV head), in place: each row is quantized by QuantizeInt4Reference with one
// group of `dim` (scale = clip_ratio · absmax / 7, codes rint(x / scale) clamped to [-7, 7]) and
// replaced by the dequantized values code · scale, in float (tools/quantizer/model.py
// `_quantize_kv`). The CPU engine stores these in its FP32 cache: the same numbers a 4-bit
// cache holds, without its memory saving. INVALID_ARGUMENT as QuantizeInt4Reference (odd dim,
// clip_ratio outside (0, 1]).
absl::Status QuantizeDequantizeInt4Rows(float* x, int64_t rows, int dim, float clip_ratio);

}  // namespace apex4

#endif  // APEX4_ENGINE_LLAMA_OPS_H_
