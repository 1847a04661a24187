// Block bookkeeping of a paged KV cache (vLLM's PagedAttention): a fixed pool of blocks of
// kKvBlockTokens tokens and a block table per sequence. A sequence reserves room for its longest
// length when it starts, so appending never fails half-way through a batch; blocks are taken
// from the pool as tokens arrive and all return to it when the sequence ends. Storage is the
// owner's: host memory for the CPU engine (PagedKvCache), device memory for the CUDA engine.
#ifndef APEX4_ENGINE_KV_BLOCK_ALLOCATOR_H_
#define APEX4_ENGINE_KV_BLOCK_ALLOCATOR_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"

namespace apex4 {

inline constexpr int kKvBlockTokens = 16;

// Not thread-safe: one writer (the engine's step) at a time.
class KvBlockAllocator {
 public:
  explicit KvBlockAllocator(int64_t num_blocks);

  // A new, empty sequence that may grow to `max_tokens`. RESOURCE_EXHAUSTED when the blocks not
  // yet reserved by other sequences cannot hold it.
  absl::StatusOr<int64_t> AddSequence(int32_t max_tokens);
  // Returns the sequence's blocks and reservation to the pool. Unknown ids are ignored.
  void RemoveSequence(int64_t id);
  bool Contains(int64_t id) const { return sequences_.contains(id); }
  // Tokens stored; 0 for unknown ids.
  int32_t Length(int64_t id) const;
  // OK when `id` exists and can take `num_tokens` more within its reservation.
  absl::Status CheckAppend(int64_t id, int32_t num_tokens) const;
  // Takes the blocks for `num_tokens` more tokens and returns the position of the first one.
  // The caller writes their keys and values at positions [returned, returned + num_tokens).
  absl::StatusOr<int32_t> Append(int64_t id, int32_t num_tokens);
  // Undoes Appends: shortens the sequence to `length` tokens (at most its current length) and
  // returns the blocks past it to the pool; the reservation stays. For a step that failed after
  // its Appends (the engine's GPU work), so that a retry writes the same positions again.
  void Truncate(int64_t id, int32_t length);
  // Block ids holding the sequence's tokens in order (position p is in block p / kKvBlockTokens,
  // slot p % kKvBlockTokens). Empty for unknown ids.
  const std::vector<int32_t>& BlockTable(int64_t id) const;

  int64_t num_blocks() const { return num_blocks_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_blocks_.size()); }
  // Blocks promised to live sequences, taken or not.
  int64_t reserved_blocks() const { return reserved_blocks_; }

  static int64_t BlocksFor(int32_t tokens) {
    return (tokens + kKvBlockTokens - 1) / kKvBlockTokens;
  }

 private:
  struct Sequence {
    int32_t max_tokens = 0;
    int32_t length = 0;
    std::vector<int32_t> blocks;
  };

  int64_t num_blocks_;
  std::vector<int32_t> free_blocks_;  // used as a stack
  int64_t reserved_blocks_ = 0;
  int64_t next_id_ = 1;
  absl::flat_hash_map<int64_t, Sequence> sequences_;
};

// What every engine's StartSequence checks first: INVALID_ARGUMENT unless
// 0 < max_tokens <= context_length.
inline absl::Status CheckSequenceLength(int32_t max_tokens, int32_t context_length) {
  if (max_tokens > 0 && max_tokens <= context_length) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "a sequence of ", max_tokens, " tokens is outside the context length ", context_length));
}

// Checks one forward step before anything changes, for every engine alike: each entry (with
// .sequence_id and .tokens) appends at least one token, no sequence appears twice, token ids
// are in [0, vocab_size) and each sequence has room left in its reservation.
template <typename Entry>
absl::Status ValidateStep(absl::Span<const Entry> batch, int32_t vocab_size,
                          const KvBlockAllocator& kv) {
  absl::flat_hash_set<int64_t> seen;
  for (const Entry& entry : batch) {
    if (entry.tokens.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", entry.sequence_id, " has no tokens in this step"));
    }
    if (!seen.insert(entry.sequence_id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", entry.sequence_id, " appears twice in one step"));
    }
    for (int32_t token : entry.tokens) {
      if (token < 0 || token >= vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", token, " of sequence ",
                                                       entry.sequence_id, " is outside [0, ",
                                                       vocab_size, ")"));
      }
    }
    if (absl::Status status =
            kv.CheckAppend(entry.sequence_id, static_cast<int32_t>(entry.tokens.size()));
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

}  // namespace apex4

#endif  // APEX4_ENGINE_KV_BLOCK_ALLOCATOR_H_
