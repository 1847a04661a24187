// Picking the next token where the logits are: greedy, or temperature sampling narrowed by top-k
// and top-p, one logit row per sequence, so that a step brings back one id per sequence instead
// of vocab_size floats (and the host does no sampling work).
//
// The rule is engine/sampler.h's, in fixed point so that every sum on the device is an exact
// integer (the same pick on every run, whatever the order of the additions):
//  - best = the first of the largest logits (NaN never compares greater, a +inf wins); -1 when no
//    logit is above -inf. Temperature 0, a +inf best, or a temperature whose inverse overflows
//    pick best.
//  - weight_i = 2^31 · expf((logit_i − best) / temperature) rounded to the nearest integer, 0 for
//    NaN and -inf; the best token weighs 2^31. Tokens rank by weight, then by id (lower first).
//  - top_k > 0 keeps the first top_k tokens of that ranking; top_p < 1 then keeps the shortest
//    prefix of what is left whose weight reaches ceil(top_p · its weight); the pick is the first
//    token of the ranking at which the running weight reaches floor(uniform · kept weight) + 1.
//  - top_k = 0 and top_p = 1: the running weight goes in vocabulary order instead (the CPU's
//    plain temperature path).
// Against the CPU's TokenPicker (float weights, double sums, logit order): the same distribution
// up to weights below 2^-32 of the best token's (never drawn here) and the order of tokens whose
// weights are within expf's 2 ulp of each other; for the same uniform, the same token except
// there and where the uniform falls within the rounding of the running sums (~1e-8 of the total)
// of a boundary between two tokens.
#ifndef APEX4_KERNELS_CUDA_OPS_SAMPLE_ROWS_H_
#define APEX4_KERNELS_CUDA_OPS_SAMPLE_ROWS_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"

namespace apex4::cuda {

// How one row is picked (validated by the caller: temperature finite and >= 0, top_k >= 0,
// top_p in (0, 1], uniform in [0, 1)).
struct SamplingRow {
  float temperature = 0.0f;  // 0: greedy
  int32_t top_k = 0;         // 0: all tokens
  float top_p = 1.0f;
  double uniform = 0.0;      // the request's draw; unused when greedy
};

// out[r] = the token picked from row r of x f32 [rows, cols] (row stride ldx ≥ cols) as params[r]
// says, or -1 when the row holds nothing above -inf. x, params and out are device arrays; rows
// picked by sampling (temperature > 0) may be overwritten with their weights. One CTA per row:
// greedy rows cost one pass over the row; sampled rows a few passes per top-k, top-p or draw
// step plus up to 31 over a shortlist, in shared memory where the row fits (≤ 50k tokens), else
// in place in x (L2).
CudaStatus SampleRows(float* x, int64_t ldx, int64_t rows, int64_t cols, const SamplingRow* params,
                      int32_t* out, cudaStream_t stream);

}  // namespace apex4::cuda

#endif  // APEX4_KERNELS_CUDA_OPS_SAMPLE_ROWS_H_
