#include "engine/kv_cache.h"

#include "absl/strings/str_cat.h"

namespace apex4 {

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::Create(const KvCacheShape& shape,
                                                                   int64_t budget_bytes) {
  if (shape.num_layers <= 0 || shape.num_kv_heads <= 0 || shape.head_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV cache shape must be positive: ", shape.num_layers, " layers, ", shape.num_kv_heads,
        " KV heads, head_dim ", shape.head_dim));
  }
  const int64_t block_bytes = int64_t{2} * shape.num_layers * shape.num_kv_heads *
                              shape.head_dim * kBlockTokens * sizeof(float);
  const int64_t num_blocks = budget_bytes / block_bytes;
  if (num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache budget of ", budget_bytes,
                                                   " bytes is below one block (", block_bytes,
                                                   " bytes for ", kBlockTokens, " tokens)"));
  }
  return std::unique_ptr<PagedKvCache>(new PagedKvCache(shape, num_blocks));
}

PagedKvCache::PagedKvCache(const KvCacheShape& shape, int64_t num_blocks)
    : shape_(shape),
      num_blocks_(num_blocks),
      block_floats_(int64_t{2} * shape.num_layers * shape.num_kv_heads * shape.head_dim *
                    kBlockTokens),
      storage_(new float[num_blocks * block_floats_]) {
  // Lowest ids on top of the stack, so a lightly used cache touches few pages.
  free_blocks_.reserve(num_blocks);
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_blocks_.push_back(static_cast<int32_t>(b));
}

absl::StatusOr<int64_t> PagedKvCache::AddSequence(int32_t max_tokens) {
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

void PagedKvCache::RemoveSequence(int64_t id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return;
  reserved_blocks_ -= BlocksFor(it->second.max_tokens);
  free_blocks_.insert(free_blocks_.end(), it->second.blocks.rbegin(), it->second.blocks.rend());
  sequences_.erase(it);
}

int32_t PagedKvCache::Length(int64_t id) const {
  auto it = sequences_.find(id);
  return it == sequences_.end() ? 0 : it->second.length;
}

absl::Status PagedKvCache::CheckAppend(int64_t id, int32_t num_tokens) const {
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

absl::StatusOr<int32_t> PagedKvCache::Append(int64_t id, int32_t num_tokens) {
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

const std::vector<int32_t>& PagedKvCache::BlockTable(int64_t id) const {
  static const std::vector<int32_t>* const kEmpty = new std::vector<int32_t>();
  auto it = sequences_.find(id);
  return it == sequences_.end() ? *kEmpty : it->second.blocks;
}

KvCacheUsage PagedKvCache::Usage() const {
  KvCacheUsage usage;
  usage.blocks_total = num_blocks_;
  usage.blocks_in_use = num_blocks_ - free_blocks();
  usage.bytes_in_use = usage.blocks_in_use * bytes_per_block();
  return usage;
}

}  // namespace apex4
