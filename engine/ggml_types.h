// ggml's tensor element types as GGUF files store them: the type ids, each type's block geometry
// (used to size tensors), and the block layouts the CPU engine decodes. Declared once here for
// the GGUF reader, the dequantizer and their tests.
#ifndef APEX4_ENGINE_GGML_TYPES_H_
#define APEX4_ENGINE_GGML_TYPES_H_

#include <cstdint>

namespace apex4 {

// Ids as in ggml.h's enum ggml_type. Only the types the engine names are listed; the reader
// still sizes every type in GgmlTypeTraitsFor().
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 8,
  kBF16 = 30,
};

struct GgmlTypeTraits {
  const char* name;
  int64_t block_size;   // elements per block along the innermost dimension
  int64_t block_bytes;  // bytes per block
};

// Traits of a ggml type id, or nullptr for ids ggml does not (or no longer) define.
const GgmlTypeTraits* GgmlTypeTraitsFor(uint32_t type);

// The name of a type id ("q4_1"), or "unknown".
const char* GgmlTypeName(uint32_t type);

inline constexpr int kQuantBlockSize = 32;

// Block layouts of ggml-common.h. `d` (scale) and `m` (minimum) are IEEE half floats.
// Q4_0: x = d * (q - 8); element j in the low nibble of qs[j], element j + 16 in its high nibble.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQuantBlockSize / 2];
};
// Q4_1: x = d * q + m, same nibble order as Q4_0.
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQuantBlockSize / 2];
};
// Q8_0: x = d * q.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQuantBlockSize];
};

static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 is 18 bytes");
static_assert(sizeof(BlockQ4_1) == 20, "block_q4_1 is 20 bytes");
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 is 34 bytes");

}  // namespace apex4

#endif  // APEX4_ENGINE_GGML_TYPES_H_
