// Encode and decode throughput of the default model's tokenizer on Moby Dick, beside
// llama.cpp's own tokenizer (llama-cpp-python) on the same text when python3 can load it.
//   bazel run -c opt //engine:tokenizer_benchmark
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/gguf_reader.h"
#include "engine/python_reference.h"
#include "engine/test_files.h"
#include "engine/tokenizer_loader.h"

namespace apex4 {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int Run() {
  const std::string text_path = SharedDataPath("moby_dick.txt");
  std::ifstream file(text_path);
  std::stringstream contents;
  contents << file.rdbuf();
  const std::string text = contents.str();
  auto gguf = GgufReader::Open(DefaultModelPath());
  if (!gguf.ok() || text.empty()) {
    std::fprintf(stderr, "needs the default model and %s\n", text_path.c_str());
    return 1;
  }
  auto tokenizer = TokenizerFromGguf(**gguf);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", tokenizer.status().ToString().c_str());
    return 1;
  }
  const auto encode_start = std::chrono::steady_clock::now();
  const auto ids = tokenizer->Encode(text, false, false);
  const double encode_seconds = SecondsSince(encode_start);
  const auto decode_start = std::chrono::steady_clock::now();
  const auto decoded = tokenizer->Decode(*ids);
  const double decode_seconds = SecondsSince(decode_start);
  const double megabytes = text.size() / 1e6;
  std::printf("apex4     encode: %zu bytes -> %zu tokens in %.3f s (%.2f MB/s, %.0f tokens/s)\n",
              text.size(), ids->size(), encode_seconds, megabytes / encode_seconds,
              ids->size() / encode_seconds);
  std::printf("apex4     decode: %.3f s (%.2f MB/s), round trip %s\n", decode_seconds,
              megabytes / decode_seconds, *decoded == text ? "exact" : "DIFFERS");

  std::fflush(stdout);
  const absl::Status llama_cpp = RunPythonReference("engine/testdata/llama_cpp_tokenizer_speed.py",
                                                    {DefaultModelPath(), text_path});
  if (!llama_cpp.ok()) std::printf("llama.cpp: %s\n", llama_cpp.ToString().c_str());
  return 0;
}

}  // namespace
}  // namespace apex4

int main() { return apex4::Run(); }
