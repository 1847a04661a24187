// Test and benchmark helper: a packed W4A4 operand filled with random nibbles over the whole
// -8..7 range kernels accept, and random positive scales.
#ifndef APEX4_KERNELS_CPU_W4A4_RANDOM_OPERAND_H_
#define APEX4_KERNELS_CPU_W4A4_RANDOM_OPERAND_H_

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/w4a4_format.h"

namespace apex4 {

struct RandomW4A4Operand {
  std::vector<uint8_t> packed;
  std::vector<float> scales;
  W4A4Operand view;

  RandomW4A4Operand(int64_t rows, int64_t k, int group_size, std::mt19937& rng)
      : packed(rows * PackedRowBytes(k)), scales(rows * (k / group_size)) {
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(0.001f, 0.1f);
    for (uint8_t& b : packed) b = static_cast<uint8_t>(byte(rng));
    for (float& s : scales) s = scale(rng);
    view = {packed.data(), scales.data(), rows, k, group_size};
  }
};

}  // namespace apex4

#endif  // APEX4_KERNELS_CPU_W4A4_RANDOM_OPERAND_H_
