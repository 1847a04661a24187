// libFuzzer target: GgufReader::Open on arbitrary bytes, then every metadata getter on every
// key (matching and mismatching types), every tensor lookup, and the model config and tokenizer
// built from the metadata, as the server does when it loads a model.
#include <cstddef>
#include <cstdint>

#include "engine/fuzz/fuzz_input_file.h"
#include "engine/ggml_types.h"
#include "engine/gguf_reader.h"
#include "engine/llama_config.h"
#include "engine/tokenizer_loader.h"

namespace apex4 {
namespace {

void ReadEverything(const GgufReader& reader) {
  for (const std::string& key : reader.keys()) {
    (void)reader.GetType(key);
    (void)reader.GetArrayType(key);
    (void)reader.GetArrayLength(key);
    (void)reader.GetString(key);
    (void)reader.GetInt(key);
    (void)reader.GetFloat(key);
    (void)reader.GetBool(key);
    (void)reader.GetStringArray(key);
    (void)reader.GetIntArray(key);
    (void)reader.GetFloatArray(key);
  }
  (void)reader.GetString("no.such.key");
  uint64_t checksum = 0;
  for (const GgufTensorInfo& tensor : reader.tensors()) {
    auto found = reader.FindTensor(tensor.name);
    if (!found.ok() || *found == nullptr) __builtin_trap();  // every listed tensor is findable
    // num_bytes is exactly the size of num_elements of the tensor's type, without wrapping.
    const GgmlTypeTraits* traits = GgmlTypeTraitsFor(tensor.type);
    if (traits == nullptr) __builtin_trap();  // Open() refuses unknown types
    const unsigned __int128 exact_bytes =
        static_cast<unsigned __int128>(tensor.num_elements() / traits->block_size) *
        static_cast<unsigned __int128>(traits->block_bytes);
    if (exact_bytes != tensor.num_bytes) __builtin_trap();
    // Open() promises the byte range lies in the file: touch its first and last byte.
    if (tensor.num_bytes > 0) checksum += tensor.data[0] + tensor.data[tensor.num_bytes - 1];
  }
  (void)checksum;
  (void)LlamaConfigFromGguf(reader);
  auto spec = TokenizerSpecFromGguf(reader);
  if (spec.ok()) (void)Tokenizer::Create(*std::move(spec));
}

}  // namespace
}  // namespace apex4

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const apex4::FuzzTempDir* dir = new apex4::FuzzTempDir;  // one per process
  const std::string path = dir->Write("input.gguf", data, size);
  auto reader = apex4::GgufReader::Open(path);
  if (reader.ok()) apex4::ReadEverything(**reader);
  return 0;
}
