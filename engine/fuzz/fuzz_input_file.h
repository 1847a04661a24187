// Fuzz-harness support: the fuzz input as a real file, for readers that only open paths.
//
// NOTES: the readers mmap their input, and ASan does not see reads past the end of a mapping
// (the rest of the last page reads as zeros). Linking this library wraps mmap/munmap so that a
// read-only private mapping of a whole file becomes a heap copy of exactly the file's size,
// and every over-read is reported as a heap-buffer-overflow. Fuzz binaries only.
#ifndef APEX4_ENGINE_FUZZ_FUZZ_INPUT_FILE_H_
#define APEX4_ENGINE_FUZZ_FUZZ_INPUT_FILE_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace apex4 {

// A private temporary directory, removed with its contents on destruction.
class FuzzTempDir {
 public:
  FuzzTempDir();
  ~FuzzTempDir();
  FuzzTempDir(const FuzzTempDir&) = delete;
  FuzzTempDir& operator=(const FuzzTempDir&) = delete;

  const std::string& path() const { return path_; }
  // Writes `size` bytes to path()/name (replacing it) and returns its path.
  std::string Write(const std::string& name, const uint8_t* data, size_t size) const;

 private:
  std::string path_;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_FUZZ_FUZZ_INPUT_FILE_H_
