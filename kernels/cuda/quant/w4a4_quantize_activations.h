// Host launcher of the fused activation quantizer (w4a4_quantize_activations.cuh).
#ifndef APEX4_KERNELS_CUDA_QUANT_W4A4_QUANTIZE_ACTIVATIONS_H_
#define APEX4_KERNELS_CUDA_QUANT_W4A4_QUANTIZE_ACTIVATIONS_H_

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/w4a4_linear.h"

namespace apex4::cuda {

CudaStatus LaunchW4A4QuantizeActivations(const W4A4QuantizeArgs& args, cudaStream_t stream);

}  // namespace apex4::cuda

#endif  // APEX4_KERNELS_CUDA_QUANT_W4A4_QUANTIZE_ACTIVATIONS_H_
