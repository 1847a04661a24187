// For tests: a small apex4 checkpoint written by the quantizer's own pipeline
// (engine/testdata/tiny_apex4_checkpoint.py, which documents it), with the quantizer's numpy
// numbers for it. Written once per test process under TEST_TMPDIR.
#ifndef APEX4_ENGINE_APEX4_TEST_CHECKPOINT_H_
#define APEX4_ENGINE_APEX4_TEST_CHECKPOINT_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace apex4 {

struct TinyApex4Checkpoint {
  std::string directory;      // the checkpoint; its source GGUF is linked beside it
  std::string atom_directory; // the same model Atom-style (INT8 outlier channels)
  std::string kv4_directory;  // `directory` with a 4-bit KV cache (keys rotated, clipped)
  nlohmann::json reference;   // reference.json: per plan log_probs, perplexity, accuracy; "kv4"
};

// Runs the script on the first call (python3 with tools/requirements.txt); later calls return
// the same checkpoint. INTERNAL with the script's output when it fails.
absl::StatusOr<const TinyApex4Checkpoint*> GetTinyApex4Checkpoint();

}  // namespace apex4

#endif  // APEX4_ENGINE_APEX4_TEST_CHECKPOINT_H_
