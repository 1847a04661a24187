#include "kernels/cuda/attention/testing/attention_case.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>

namespace apex4::cuda::attention_test {
namespace {

constexpr uint16_t kNanBits = 0xffff;  // fp16 and bf16 NaN (all bytes 0xff); float NaN likewise

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

uint16_t FloatToHalfBits(float f) {
  const __half h = __float2half_rn(f);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

__nv_bfloat16 FloatToBf16(float f) { return __float2bfloat16_rn(f); }

float Bf16BitsToFloat(uint16_t bits) {
  const uint32_t wide = uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &wide, 4);
  return f;
}

[[noreturn]] void Die(const char* what) {
  std::printf("FATAL %s\n", what);
  std::exit(1);
}

}  // namespace

float Bf16ToFloat(__nv_bfloat16 v) {
  uint16_t bits;
  std::memcpy(&bits, &v, 2);
  return Bf16BitsToFloat(bits);
}

float HalfToFloat(uint16_t bits) {
  // A table: the reference converts every cached element it reads.
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) {
      __half_raw raw;
      raw.x = static_cast<unsigned short>(i);
      t[i] = __half2float(__half(raw));
    }
    return t;
  }();
  return table[bits];
}

AttentionCase::AttentionCase(DeviceOps& ops, const TestShape& shape, const Bounds& bounds,
                             const CaseOptions& options)
    : ops_(ops), shape_(shape), bounds_(bounds), options_(options) {
  const int H = shape.num_heads, KV = shape.num_kv_heads, D = shape.head_dim;
  const int64_t max_blocks_per_seq = CeilDiv(bounds.max_context_len, kKvBlockTokens);
  table_stride_ = static_cast<int32_t>(max_blocks_per_seq + options.table_pad);
  num_blocks_ = static_cast<int32_t>(bounds.num_seqs * max_blocks_per_seq + options.spare_blocks);
  block_bytes_ = KvCacheBlockBytes(options.format, KV, D);
  block_stride_ = options.interleaved_kv ? 2 * block_bytes_ : block_bytes_ + options.block_stride_pad;
  pool_bytes_ = int64_t{num_blocks_} * block_stride_;
  ld_qkv_ = int64_t{H + 2 * KV} * D + 8;
  ld_out_ = int64_t{H} * D + options.ld_out_pad;
  max_positions_ = bounds.max_context_len + 3;

  // The cos/sin table as the CPU engine computes its angles (engine/llama_ops.cc ApplyRope).
  rope_.resize(int64_t{max_positions_} * D);
  for (int32_t pos = 0; pos < max_positions_; ++pos) {
    for (int i = 0; i < D / 2; ++i) {
      const double angle = pos * std::pow(double{shape.rope_theta}, -2.0 * i / static_cast<double>(D));
      rope_[(int64_t{pos} * (D / 2) + i) * 2] = static_cast<float>(std::cos(angle));
      rope_[(int64_t{pos} * (D / 2) + i) * 2 + 1] = static_cast<float>(std::sin(angle));
    }
  }

  d_query_start_ = static_cast<int32_t*>(ops_.Alloc((bounds.num_seqs + 1) * sizeof(int32_t)));
  d_context_len_ = static_cast<int32_t*>(ops_.Alloc(std::max(bounds.num_seqs, 1) * sizeof(int32_t)));
  d_block_tables_ =
      static_cast<int32_t*>(ops_.Alloc(std::max<int64_t>(int64_t{bounds.num_seqs} * table_stride_, 1) * 4));
  d_qkv_ = static_cast<__nv_bfloat16*>(ops_.Alloc(std::max<int64_t>(bounds.num_tokens, 1) * ld_qkv_ * 2));
  d_rope_ = static_cast<float*>(ops_.Alloc(rope_.size() * sizeof(float)));
  d_q_ = static_cast<__half*>(ops_.Alloc(std::max<int64_t>(bounds.num_tokens, 1) * H * D * 2));
  d_k_pool_ = static_cast<uint8_t*>(ops_.Alloc(pool_bytes_));
  if (!options.interleaved_kv) d_v_pool_ = static_cast<uint8_t*>(ops_.Alloc(pool_bytes_));
  d_out_ = static_cast<__nv_bfloat16*>(ops_.Alloc(std::max<int64_t>(bounds.num_tokens, 1) * ld_out_ * 2));
  ops_.Upload(d_rope_, rope_.data(), rope_.size() * sizeof(float));

  batch_.query_start = d_query_start_;
  batch_.context_len = d_context_len_;
  batch_.block_tables = d_block_tables_;
  batch_.block_table_stride = table_stride_;
  batch_.num_seqs = bounds.num_seqs;
  batch_.num_tokens = bounds.num_tokens;
  batch_.max_query_len = bounds.max_query_len;
  batch_.max_context_len = bounds.max_context_len;
  attn_shape_ = AttentionShape{H, KV, D};
  workspace_bytes_ = PagedAttentionWorkspaceBytes(batch_, attn_shape_);
  if (workspace_bytes_ > 0) d_workspace_ = ops_.Alloc(workspace_bytes_);
}

AttentionCase::~AttentionCase() {
  for (void* p : std::initializer_list<void*>{d_query_start_, d_context_len_, d_block_tables_, d_qkv_,
                                              d_rope_, d_q_, d_k_pool_, d_v_pool_, d_out_, d_workspace_}) {
    if (p != nullptr) ops_.Free(p);
  }
}

namespace {

int64_t RowBytes(KvCacheFormat format, int head_dim) {
  return format == KvCacheFormat::kInt4 ? head_dim / 2 : head_dim * 2;
}

// Element d of a row of INT4 codes (paged_attention.h: two's complement nibbles; in each 32-bit
// word element 2j in nibble j, 2j+1 in nibble j + 4).
int Int4Code(const uint8_t* row, int d) {
  const int j = d % 8;
  const int position = 8 * (d / 8) + (j >> 1) + 4 * (j & 1);  // nibble index in the row
  const int nibble = (row[position / 2] >> (4 * (position & 1))) & 0xF;
  return nibble >= 8 ? nibble - 16 : nibble;
}

float ReadFloat(const std::vector<uint8_t>& pool, int64_t offset) {
  float f;
  std::memcpy(&f, &pool[offset], 4);
  return f;
}

uint16_t ReadHalfBits(const std::vector<uint8_t>& pool, int64_t offset) {
  uint16_t bits;
  std::memcpy(&bits, &pool[offset], 2);
  return bits;
}

// The normalized Walsh-Hadamard transform of one head (Sylvester order), in double.
void HadamardInPlace(std::vector<double>& x) {
  const size_t n = x.size();
  for (size_t h = 1; h < n; h *= 2) {
    for (size_t i = 0; i < n; i += 2 * h) {
      for (size_t j = i; j < i + h; ++j) {
        const double a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  for (double& v : x) v /= std::sqrt(static_cast<double>(n));
}

}  // namespace

int64_t AttentionCase::RowOffset(bool is_v, int32_t block, int kv_head, int slot) const {
  const int64_t v_offset = is_v && options_.interleaved_kv ? block_bytes_ : 0;
  return int64_t{block} * block_stride_ + v_offset +
         (int64_t{kv_head} * kKvBlockTokens + slot) * RowBytes(options_.format, shape_.head_dim);
}

int64_t AttentionCase::ScaleOffset(bool is_v, int32_t block, int kv_head, int slot) const {
  const int64_t v_offset = is_v && options_.interleaved_kv ? block_bytes_ : 0;
  return int64_t{block} * block_stride_ + v_offset +
         int64_t{shape_.num_kv_heads} * kKvBlockTokens * (shape_.head_dim / 2) +
         (int64_t{kv_head} * kKvBlockTokens + slot) * 4;
}

void AttentionCase::CachedRow(const std::vector<uint8_t>& pool, bool is_v, int32_t block, int kv_head, int slot,
                              double* out) const {
  const int64_t row = RowOffset(is_v, block, kv_head, slot);
  if (options_.format == KvCacheFormat::kFp16) {
    for (int d = 0; d < shape_.head_dim; ++d) out[d] = HalfToFloat(ReadHalfBits(pool, row + 2 * d));
    return;
  }
  const double scale = ReadFloat(pool, ScaleOffset(is_v, block, kv_head, slot));
  for (int d = 0; d < shape_.head_dim; ++d) out[d] = Int4Code(&pool[row], d) * scale;
}

void AttentionCase::Load(const std::vector<SeqSpec>& seqs, std::mt19937& rng) {
  const int H = shape_.num_heads, KV = shape_.num_kv_heads, D = shape_.head_dim;
  if (static_cast<int32_t>(seqs.size()) != bounds_.num_seqs) Die("scenario: wrong number of sequences");
  seqs_ = seqs;
  query_start_.assign(bounds_.num_seqs + 1, 0);
  context_len_.assign(bounds_.num_seqs, 0);
  for (int s = 0; s < bounds_.num_seqs; ++s) {
    const SeqSpec& q = seqs[s];
    if (q.query_len < 0 || q.query_len > bounds_.max_query_len || q.prior < 0 ||
        q.prior + q.query_len > bounds_.max_context_len) {
      Die("scenario: a sequence outside the bounds");
    }
    query_start_[s + 1] = query_start_[s] + q.query_len;
    context_len_[s] = q.prior + q.query_len;
  }
  if (query_start_[bounds_.num_seqs] > bounds_.num_tokens) Die("scenario: more tokens than the bound");

  // Shuffled block ids; unused table entries hold ids far outside the pool.
  std::vector<int32_t> ids(num_blocks_);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  block_tables_.resize(int64_t{bounds_.num_seqs} * table_stride_);
  for (size_t i = 0; i < block_tables_.size(); ++i) block_tables_[i] = (i & 1) ? INT32_MIN : INT32_MAX;
  size_t next = 0;
  for (int s = 0; s < bounds_.num_seqs; ++s) {
    for (int64_t j = 0; j < CeilDiv(context_len_[s], kKvBlockTokens); ++j) {
      block_tables_[int64_t{s} * table_stride_ + j] = ids[next++];
    }
  }

  // Cache: NaN (all bytes 0xff: fp16 NaN, INT4 code -1 with a NaN scale) everywhere but the
  // tokens already there.
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::uniform_int_distribution<int> code(-7, 7);
  k_pool_init_.assign(pool_bytes_, 0xff);
  if (!options_.interleaved_kv) v_pool_init_.assign(pool_bytes_, 0xff);
  for (int s = 0; s < bounds_.num_seqs; ++s) {
    for (int32_t pos = 0; pos < seqs[s].prior; ++pos) {
      const int32_t block = block_tables_[int64_t{s} * table_stride_ + pos / kKvBlockTokens];
      for (int kv = 0; kv < KV; ++kv) {
        for (const bool is_v : {false, true}) {
          std::vector<uint8_t>& img = is_v && !options_.interleaved_kv ? v_pool_init_ : k_pool_init_;
          const float amplitude = is_v ? 1.0f : options_.k_amplitude;
          const int64_t row = RowOffset(is_v, block, kv, pos % kKvBlockTokens);
          if (options_.format == KvCacheFormat::kFp16) {
            for (int d = 0; d < D; ++d) {
              const uint16_t bits = FloatToHalfBits(amplitude * unit(rng));
              std::memcpy(&img[row + 2 * d], &bits, 2);
            }
          } else {
            for (int d = 0; d < D; d += 2) {
              img[row + d / 2] = static_cast<uint8_t>((code(rng) & 0xF) | ((code(rng) & 0xF) << 4));
            }
            const float scale = amplitude / 7.0f * (0.5f + 0.5f * std::fabs(unit(rng)));
            std::memcpy(&img[ScaleOffset(is_v, block, kv, pos % kKvBlockTokens)], &scale, 4);
          }
        }
      }
    }
  }

  qkv_.resize(bounds_.num_tokens * ld_qkv_);
  for (int64_t t = 0; t < bounds_.num_tokens; ++t) {
    for (int64_t c = 0; c < ld_qkv_; ++c) {
      const float a =
          c < int64_t{H} * D ? options_.q_amplitude : (c < int64_t{H + KV} * D ? options_.k_amplitude : 1.0f);
      qkv_[t * ld_qkv_ + c] = FloatToBf16(a * unit(rng));
    }
  }

  ops_.Upload(d_query_start_, query_start_.data(), query_start_.size() * 4);
  ops_.Upload(d_context_len_, context_len_.data(), context_len_.size() * 4);
  ops_.Upload(d_block_tables_, block_tables_.data(), block_tables_.size() * 4);
  ops_.Upload(d_qkv_, qkv_.data(), qkv_.size() * 2);
  ops_.Upload(d_k_pool_, k_pool_init_.data(), pool_bytes_);
  if (!options_.interleaved_kv) ops_.Upload(d_v_pool_, v_pool_init_.data(), pool_bytes_);
  const std::vector<unsigned char> q_poison(bounds_.num_tokens * H * D * 2, 0xff);
  ops_.Upload(d_q_, q_poison.data(), q_poison.size());
  const std::vector<unsigned char> out_poison(bounds_.num_tokens * ld_out_ * 2, 0xff);
  ops_.Upload(d_out_, out_poison.data(), out_poison.size());
  if (workspace_bytes_ > 0) {
    const std::vector<unsigned char> ws_poison(workspace_bytes_, 0xff);
    ops_.Upload(d_workspace_, ws_poison.data(), ws_poison.size());
  }
}

CudaStatus AttentionCase::Enqueue(cudaStream_t stream) const {
  KvCacheLayer cache;
  cache.format = options_.format;
  cache.k = d_k_pool_;
  cache.v = options_.interleaved_kv ? d_k_pool_ + block_bytes_ : d_v_pool_;
  cache.block_stride = block_stride_;
  APEX4_CUDA_RETURN_IF_NOT_OK(RopeAndWriteKv(d_qkv_, ld_qkv_, batch_, attn_shape_, d_rope_, max_positions_,
                                             d_q_, cache, options_.int4, stream));
  const float scale = 1.0f / std::sqrt(static_cast<float>(shape_.head_dim));
  return PagedAttention(d_q_, cache, batch_, attn_shape_, scale, d_workspace_, d_out_, ld_out_, stream);
}

void AttentionCase::CheckCachedRow(const std::vector<uint8_t>& pool, bool is_v, int32_t block, int kv_head,
                                   int slot, const std::vector<double>& want, const std::vector<double>& magnitude,
                                   std::vector<char>* written,
                                   const std::function<void(const std::string&)>& report) const {
  const int D = shape_.head_dim;
  const int64_t row = RowOffset(is_v, block, kv_head, slot);
  const int64_t row_bytes = RowBytes(options_.format, D);
  std::fill(written->begin() + row, written->begin() + row + row_bytes, 1);
  char what[160];
  std::snprintf(what, sizeof what, "%s block %d kv head %d slot %d", is_v ? "v" : "k", block, kv_head, slot);
  if (options_.format == KvCacheFormat::kFp16) {
    for (int d = 0; d < D; ++d) {
      const double got = HalfToFloat(ReadHalfBits(pool, row + 2 * d));
      // fp16 rounding (2^-11 relative, 2^-24 absolute below the normal range) + float arithmetic.
      const double bound =
          std::ldexp(std::fabs(want[d]), -11) * 1.001 + std::ldexp(magnitude[d], -21) + std::ldexp(1.0, -24);
      if (!(std::fabs(got - want[d]) <= bound)) {
        report(std::string(what) + " dim " + std::to_string(d) + ": got " + std::to_string(got) + " want " +
               std::to_string(want[d]));
        return;
      }
    }
    return;
  }
  // INT4: the scale from the row's absmax, every code the nearest level (or the clip level).
  const int64_t scale_at = ScaleOffset(is_v, block, kv_head, slot);
  std::fill(written->begin() + scale_at, written->begin() + scale_at + 4, 1);
  double absmax = 0, max_magnitude = 0;
  for (int d = 0; d < D; ++d) {
    absmax = std::max(absmax, std::fabs(want[d]));
    max_magnitude = std::max(max_magnitude, magnitude[d]);
  }
  const double clip = is_v ? options_.int4.value_clip_ratio : options_.int4.key_clip_ratio;
  const double want_scale = clip * absmax / 7.0;
  const double scale = ReadFloat(pool, scale_at);
  // Float RoPE / rotation error on the row's values (relative to their magnitudes).
  const double value_err = std::ldexp(max_magnitude, -19);
  if (!(std::fabs(scale - want_scale) <= std::ldexp(want_scale, -20) + clip * value_err / 7.0)) {
    report(std::string(what) + ": scale " + std::to_string(scale) + " want " + std::to_string(want_scale));
    return;
  }
  for (int d = 0; d < D; ++d) {
    const double clipped = std::clamp(want[d], -7.0 * scale, 7.0 * scale);
    const double got = Int4Code(&pool[row], d) * scale;
    if (!(std::fabs(got - clipped) <= 0.5 * scale * (1 + 1e-5) + value_err)) {
      report(std::string(what) + " dim " + std::to_string(d) + ": code " + std::to_string(Int4Code(&pool[row], d)) +
             " x scale " + std::to_string(scale) + " for value " + std::to_string(want[d]));
      return;
    }
  }
}

std::vector<uint16_t> AttentionCase::DownloadOut() const {
  std::vector<uint16_t> out(bounds_.num_tokens * ld_out_);
  ops_.Download(out.data(), d_out_, out.size() * 2);
  return out;
}

CheckResult AttentionCase::Check(const std::string& label, std::mt19937& rng) const {
  const int H = shape_.num_heads, KV = shape_.num_kv_heads, D = shape_.head_dim;
  const int G = H / KV;
  CheckResult result;
  int reported = 0;
  auto report = [&](const char* fmt, auto... args) {
    result.ok = false;
    if (reported++ < 8) {
      std::printf("  mismatch %s: ", label.c_str());
      std::printf(fmt, args...);
      std::printf("\n");
    }
  };

  std::vector<uint16_t> q(bounds_.num_tokens * H * D);
  ops_.Download(q.data(), d_q_, q.size() * 2);
  std::vector<uint8_t> k_pool(pool_bytes_), v_pool_sep;
  ops_.Download(k_pool.data(), d_k_pool_, pool_bytes_);
  if (!options_.interleaved_kv) {
    v_pool_sep.resize(pool_bytes_);
    ops_.Download(v_pool_sep.data(), d_v_pool_, pool_bytes_);
  }
  const std::vector<uint8_t>& v_pool = options_.interleaved_kv ? k_pool : v_pool_sep;
  const std::vector<uint16_t> out = DownloadOut();
  const int32_t total = query_start_[bounds_.num_seqs];
  const bool rotate = options_.format == KvCacheFormat::kInt4 && options_.int4.rotate_keys;
  auto report_text = [&](const std::string& text) { report("%s", text.c_str()); };

  // 1. RoPE of q and k (double reference from the same float table; then the Hadamard rotation
  //    where the INT4 cache asks for it), v converted; every other cache byte and q row unchanged.
  // One head of token row `row` at column `col0`: reference values and their magnitudes (the
  // scale of float rounding errors in them).
  auto reference_head = [&](const __nv_bfloat16* row, int64_t col0, bool rope, int32_t pos, std::vector<double>* y,
                            std::vector<double>* mag) {
    y->assign(D, 0.0);
    mag->assign(D, 0.0);
    for (int p = 0; p < D / 2; ++p) {
      const double x0 = Bf16ToFloat(row[col0 + 2 * p]), x1 = Bf16ToFloat(row[col0 + 2 * p + 1]);
      if (!rope) {
        (*y)[2 * p] = x0;
        (*y)[2 * p + 1] = x1;
        (*mag)[2 * p] = std::fabs(x0);
        (*mag)[2 * p + 1] = std::fabs(x1);
        continue;
      }
      const double c = rope_[(int64_t{pos} * (D / 2) + p) * 2];
      const double sn = rope_[(int64_t{pos} * (D / 2) + p) * 2 + 1];
      (*y)[2 * p] = x0 * c - x1 * sn;
      (*y)[2 * p + 1] = x0 * sn + x1 * c;
      (*mag)[2 * p] = (*mag)[2 * p + 1] =
          std::fabs(x0 * c) + std::fabs(x1 * sn) + std::fabs(x0 * sn) + std::fabs(x1 * c);
    }
    if (rope && rotate) {
      HadamardInPlace(*y);
      // Every output sums all D inputs over log2(D) float stages.
      double sum = 0;
      for (double m : *mag) sum += m;
      mag->assign(D, 4.0 * sum / std::sqrt(static_cast<double>(D)));
    }
  };
  std::vector<char> k_written(pool_bytes_, 0), v_written(pool_bytes_, 0);
  std::vector<double> y, mag;
  double worst_rope = 0;
  for (int s = 0; s < bounds_.num_seqs; ++s) {
    for (int32_t i = 0; i < seqs_[s].query_len; ++i) {
      const int64_t t = query_start_[s] + i;
      const int32_t pos = seqs_[s].prior + i;
      const __nv_bfloat16* row = &qkv_[t * ld_qkv_];
      for (int h = 0; h < H; ++h) {
        reference_head(row, int64_t{h} * D, /*rope=*/true, pos, &y, &mag);
        for (int d = 0; d < D; ++d) {
          const int64_t at = (t * H + h) * D + d;
          const double got = HalfToFloat(q[at]);
          worst_rope = std::max(worst_rope, std::fabs(got - y[d]) / std::max(mag[d], 1e-30));
          const double bound =
              std::ldexp(std::fabs(y[d]), -11) * 1.001 + std::ldexp(mag[d], -21) + std::ldexp(1.0, -24);
          if (!(std::fabs(got - y[d]) <= bound)) {
            report("q token %lld head %d dim %d: got %g want %g", (long long)t, h, d, got, y[d]);
          }
        }
      }
      const int32_t block = block_tables_[int64_t{s} * table_stride_ + pos / kKvBlockTokens];
      const int slot = pos % kKvBlockTokens;
      for (int kv = 0; kv < KV; ++kv) {
        reference_head(row, int64_t{H + kv} * D, /*rope=*/true, pos, &y, &mag);
        CheckCachedRow(k_pool, false, block, kv, slot, y, mag, &k_written, report_text);
        reference_head(row, int64_t{H + KV + kv} * D, /*rope=*/false, pos, &y, &mag);
        CheckCachedRow(v_pool, true, block, kv, slot, y, mag, &v_written, report_text);
      }
    }
  }
  for (int64_t t = total; t < bounds_.num_tokens; ++t) {
    for (int64_t e = 0; e < int64_t{H} * D; ++e) {
      if (q[t * H * D + e] != kNanBits) {
        report("q padding row %lld written", (long long)t);
        break;
      }
    }
  }
  {
    const std::vector<uint8_t>& v_init = options_.interleaved_kv ? k_pool_init_ : v_pool_init_;
    int64_t stray = 0;
    for (int64_t e = 0; e < pool_bytes_; ++e) {
      if (options_.interleaved_kv) {
        // One buffer: an element is K's or V's.
        if (!k_written[e] && !v_written[e] && k_pool[e] != k_pool_init_[e]) ++stray;
      } else {
        if (!k_written[e] && k_pool[e] != k_pool_init_[e]) ++stray;
        if (!v_written[e] && v_pool[e] != v_init[e]) ++stray;
      }
    }
    if (stray > 0) report("%lld cache bytes changed that no token of this step owns", (long long)stray);
  }

  // 2. Attention, from the q and cache the kernels produced (so this isolates attention).
  const double scale = static_cast<double>(1.0f / std::sqrt(static_cast<float>(D)));
  int64_t total_cost = 0;
  for (int s = 0; s < bounds_.num_seqs; ++s) {
    for (int32_t i = 0; i < seqs_[s].query_len; ++i)
      total_cost += int64_t{seqs_[s].prior + i + 1} * H * D * 2;
  }
  const double keep = total_cost <= options_.reference_budget
                          ? 1.0
                          : static_cast<double>(options_.reference_budget) / static_cast<double>(total_cost);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  double max_err = 0, max_ref = 0;
  int64_t bound_violations = 0;
  std::vector<double> scores, acc(D), abs_acc(D), qd(D), cached(D);
  for (int s = 0; s < bounds_.num_seqs; ++s) {
    const int32_t len = seqs_[s].query_len;
    for (int32_t i = 0; i < len; ++i) {
      if (!(i == 0 || i == len - 1 || coin(rng) < keep)) continue;
      const int64_t t = query_start_[s] + i;
      const int32_t pos = seqs_[s].prior + i;
      ++result.rows_checked;
      for (int h = 0; h < H; ++h) {
        const int kv = h / G;
        for (int d = 0; d < D; ++d) qd[d] = HalfToFloat(q[(t * H + h) * D + d]);
        scores.assign(pos + 1, 0.0);
        double mx = -INFINITY;
        for (int32_t j = 0; j <= pos; ++j) {
          const int32_t block = block_tables_[int64_t{s} * table_stride_ + j / kKvBlockTokens];
          CachedRow(k_pool, false, block, kv, j % kKvBlockTokens, cached.data());
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += qd[d] * cached[d];
          scores[j] = dot * scale;
          mx = std::max(mx, scores[j]);
        }
        double sum = 0;
        for (double& x : scores) sum += (x = std::exp(x - mx));
        std::fill(acc.begin(), acc.end(), 0.0);
        std::fill(abs_acc.begin(), abs_acc.end(), 0.0);
        double vmax = 0;
        for (int32_t j = 0; j <= pos; ++j) {
          const int32_t block = block_tables_[int64_t{s} * table_stride_ + j / kKvBlockTokens];
          CachedRow(v_pool, true, block, kv, j % kKvBlockTokens, cached.data());
          const double pj = scores[j] / sum;
          for (int d = 0; d < D; ++d) {
            const double v = cached[d];
            acc[d] += pj * v;
            abs_acc[d] += pj * std::fabs(v);
            vmax = std::max(vmax, std::fabs(v));
          }
        }
        for (int d = 0; d < D; ++d) {
          const double got = Bf16BitsToFloat(out[t * ld_out_ + int64_t{h} * D + d]);
          const double err = std::fabs(got - acc[d]);
          // bf16 output rounding (2^-9 relative), fp16 probabilities in P·V (2^-11 of Σ p|v|),
          // fp16-subnormal probabilities (2^-25 absolute each), with margin. INT4 cache: the decode
          // kernel's P is 16-bit fixed point in units of max p · max value scale / 65535, so each
          // key adds up to 2^-17 · max|v| · max p (a token's largest code is ±7), with margin.
          const double fixed_point_p =
              options_.format == KvCacheFormat::kInt4 ? std::ldexp(vmax * (pos + 1) / sum, -16) : 0.0;
          const double bound = std::ldexp(std::fabs(acc[d]), -8) + std::ldexp(abs_acc[d], -9) +
                               std::ldexp(vmax * (pos + 1), -24) + fixed_point_p;
          if (!(err <= bound)) {
            if (bound_violations++ < 4) {
              report("out token %lld (seq %d pos %d) head %d dim %d: got %.6g want %.6g (bound %.2g)",
                     (long long)t, s, pos, h, d, got, acc[d], bound);
            }
          }
          max_err = std::max(max_err, std::isnan(err) ? INFINITY : err);
          max_ref = std::max(max_ref, std::fabs(acc[d]));
        }
      }
    }
  }
  result.attention_err_over_scale = max_ref > 0 ? max_err / max_ref : max_err;
  if (result.attention_err_over_scale > 1e-2) {
    report("max err / output scale %.3g > 1e-2", result.attention_err_over_scale);
  }
  if (bound_violations > 0)
    report("%lld output elements outside their error bound", (long long)bound_violations);
  // Every row of the step written (finite), padding columns and rows untouched.
  int64_t nonfinite = 0, touched = 0;
  for (int64_t t = 0; t < bounds_.num_tokens; ++t) {
    for (int64_t c = 0; c < ld_out_; ++c) {
      const uint16_t bits = out[t * ld_out_ + c];
      if (t < total && c < int64_t{H} * D) {
        nonfinite += !std::isfinite(Bf16BitsToFloat(bits));
      } else {
        touched += bits != kNanBits;
      }
    }
  }
  if (nonfinite > 0) report("%lld output elements not finite (unwritten?)", (long long)nonfinite);
  if (touched > 0)
    report("%lld output elements written outside the rows/columns of the step", (long long)touched);

  std::printf("%s %s: %d seqs, %d tokens, %lld rows checked, max err/scale %.2e, rope err %.1e%s\n",
              result.ok ? "PASS" : "FAIL", label.c_str(), bounds_.num_seqs, total,
              (long long)result.rows_checked, result.attention_err_over_scale, worst_rope,
              workspace_bytes_ > 0 ? ", split-KV" : "");
  std::fflush(stdout);
  return result;
}

}  // namespace apex4::cuda::attention_test
