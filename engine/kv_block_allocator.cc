#include "engine/kv_block_allocator.h"

#include "absl/strings/str_cat.h"

namespace apex4 {

KvBlockAllocator::KvBlockAllocator(int64_t num_blocks) : num_blocks_(num_blocks) {
  // Lowest ids on top of the stack, so a lightly used cache touches few pages.
  free_blocks_.reserve(num_blocks);
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_blocks_.push_back(static_cast<int32_t>(b));
}

absl::StatusOr<int64_t> KvBlockAllocator::AddSequence(int32_t max_tokens) {
  if (max_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("a sequence needs room for at least one token, got ", max_tokens));
  }
  const int64_t blocks = BlocksFor(max_tokens);
  if (blocks > num_blocks_ - reserved_blocks_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache full: ", max_tokens, " tokens need ", blocks, " blocks, ",
        num_blocks_ - reserved_blocks_, " of ", num_blocks_, " are unreserved"));
  }
  reserved_blocks_ += blocks;
  const int64_t id = next_id_++;
  sequences_[id].max_tokens = max_tokens;
  return id;
}

void KvBlockAllocator::RemoveSequence(int64_t id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return;
  reserved_blocks_ -= BlocksFor(it->second.max_tokens);
  free_blocks_.insert(free_blocks_.end(), it->second.blocks.rbegin(), it->second.blocks.rend());
  sequences_.erase(it);
}

int32_t KvBlockAllocator::Length(int64_t id) const {
  auto it = sequences_.find(id);
  return it == sequences_.end() ? 0 : it->second.length;
}

absl::Status KvBlockAllocator::CheckAppend(int64_t id, int32_t num_tokens) const {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown sequence ", id));
  }
  const Sequence& seq = it->second;
  if (num_tokens < 0 || num_tokens > seq.max_tokens - seq.length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sequence ", id, " holds ", seq.length, " of at most ", seq.max_tokens,
        " tokens; cannot append ", num_tokens));
  }
  return absl::OkStatus();
}

absl::StatusOr<int32_t> KvBlockAllocator::Append(int64_t id, int32_t num_tokens) {
  if (absl::Status status = CheckAppend(id, num_tokens); !status.ok()) return status;
  Sequence& seq = sequences_[id];
  const int32_t start = seq.length;
  seq.length += num_tokens;
  // The reservation guarantees these blocks are free.
  while (static_cast<int64_t>(seq.blocks.size()) < BlocksFor(seq.length)) {
    seq.blocks.push_back(free_blocks_.back());
    free_blocks_.pop_back();
  }
  return start;
}

void KvBlockAllocator::Truncate(int64_t id, int32_t length) {
  auto it = sequences_.find(id);
  if (it == sequences_.end() || length < 0 || length >= it->second.length) return;
  Sequence& seq = it->second;
  seq.length = length;
  while (static_cast<int64_t>(seq.blocks.size()) > BlocksFor(length)) {
    free_blocks_.push_back(seq.blocks.back());
    seq.blocks.pop_back();
  }
}

const std::vector<int32_t>& KvBlockAllocator::BlockTable(int64_t id) const {
  static const std::vector<int32_t>* const kEmpty = new std::vector<int32_t>();
  auto it = sequences_.find(id);
  return it == sequences_.end() ? *kEmpty : it->second.blocks;
}

}  // namespace apex4
