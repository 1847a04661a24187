#include "engine/fuzz/fuzz_input_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <unordered_map>

extern "C" {
void* __real_mmap(void* address, size_t length, int prot, int flags, int fd, off_t offset);
int __real_munmap(void* address, size_t length);
}

namespace {

std::mutex heap_mappings_mutex;
std::unordered_map<void*, size_t>& HeapMappings() {
  static auto* mappings = new std::unordered_map<void*, size_t>;
  return *mappings;
}

}  // namespace

extern "C" void* __wrap_mmap(void* address, size_t length, int prot, int flags, int fd,
                             off_t offset) {
  if (address != nullptr || fd < 0 || prot != PROT_READ || flags != MAP_PRIVATE || offset != 0 ||
      length == 0) {
    return __real_mmap(address, length, prot, flags, fd, offset);
  }
  auto* copy = static_cast<uint8_t*>(std::malloc(length));
  if (copy == nullptr) return MAP_FAILED;
  size_t done = 0;
  while (done < length) {
    const ssize_t got = ::pread(fd, copy + done, length - done, static_cast<off_t>(done));
    if (got <= 0) {
      std::free(copy);
      return MAP_FAILED;
    }
    done += static_cast<size_t>(got);
  }
  std::lock_guard<std::mutex> lock(heap_mappings_mutex);
  HeapMappings()[copy] = length;
  return copy;
}

extern "C" int __wrap_munmap(void* address, size_t length) {
  {
    std::lock_guard<std::mutex> lock(heap_mappings_mutex);
    auto it = HeapMappings().find(address);
    if (it != HeapMappings().end()) {
      if (it->second != length) std::abort();  // a partial unmap the copy cannot mimic
      HeapMappings().erase(it);
      std::free(address);
      return 0;
    }
  }
  return __real_munmap(address, length);
}

namespace apex4 {

FuzzTempDir::FuzzTempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                        "/apex4_fuzz_XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  path_ = pattern;
}

FuzzTempDir::~FuzzTempDir() {
  std::error_code error;
  std::filesystem::remove_all(path_, error);
}

std::string FuzzTempDir::Write(const std::string& name, const uint8_t* data, size_t size) const {
  const std::string path = path_ + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::perror(path.c_str());
    std::abort();
  }
  return path;
}

}  // namespace apex4
