// Fused CPU operations of one decode step (rlxf.lm.decode) and of the PPO update's forwards and backwards
// (rlxf.lm.kernels, rlxf.lm.logprobs.target_logprobs); built and loaded by rlxf.lm.fused.
//
// A decode step of a 135M model at batch 4 spends about a third of its time outside the matmuls, in some 35 small
// PyTorch operations per layer (a few microseconds of dispatch each). Four of these replace all of them but the
// matmuls (the fifth is the sampler), computing what the eager operations compute: fp32 arithmetic, results rounded
// to the compute dtype at the same points (T = float or c10::BFloat16). Reductions (the norm's sum of squares, the
// attention's dot products and softmax sum) add in another order than PyTorch's kernels, so results may differ from
// eager in the last bit. The training operations (target log-probabilities, RMSNorm, SiLU * up, RoPE, each with its
// backward) follow the same rules and run over rows with at::parallel_for, which needs this file compiled with OpenMP
// (rlxf.lm.fused does, where the compiler has it; without it the loops run on one thread: `parallel_threads`).
#include <ATen/Parallel.h>
#include <torch/extension.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define RLXF_SMALL_LINEAR_FP32 1
#else
#define RLXF_SMALL_LINEAR_FP32 0
#endif
#if defined(__AVX512BF16__) && defined(__AVX512BW__) && defined(__AVX512F__)
#define RLXF_SMALL_LINEAR 1
#else
#define RLXF_SMALL_LINEAR 0
#endif
#ifndef VECTOR_SAMPLE
#define VECTOR_SAMPLE 1
#endif

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

constexpr int kLanes = 16;  // independent partial sums: lets the compiler vectorise a reduction without reordering it

// Storage of the compute dtype as plain numbers the compiler vectorises (c10::BFloat16 is a class, and loops over it
// stay scalar): float as is, bf16 as its 16 bits, widened exactly and rounded to nearest even as PyTorch does.
template <typename T> struct Storage;
template <> struct Storage<float> {
  using type = float;
  static inline float load(float v) { return v; }
  static inline float store(float v) { return v; }
};
template <> struct Storage<c10::BFloat16> {
  using type = uint16_t;
  static inline float load(uint16_t v) {
    const uint32_t bits = static_cast<uint32_t>(v) << 16;
    float out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
  }
  static inline uint16_t store(float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    return v != v ? static_cast<uint16_t>(0x7FC0u) : static_cast<uint16_t>(rounded);  // NaN stays NaN
  }
};
// a value rounded to the compute dtype and widened again (what eager's bf16 intermediate results hold)
template <typename T> inline float round_to(float v) { return Storage<T>::load(Storage<T>::store(v)); }

// exp(x) in fp32 to about 1 ulp (Cephes' expf: x = k ln2 + r, |r| <= ln2 / 2, a degree-5 polynomial in r, times
// 2^k), branch-free so that loops over it vectorise (std::exp does not). Inputs below -87.3 give about 1e-38, not 0:
// callers mask what must be exactly 0.
inline float fast_exp(float x) {
  x = x < 88.3f ? x : 88.3f;
  x = x > -87.3f ? x : -87.3f;
  // k = floor(x log2(e) + 1/2), through a truncation of a positive number (a plain conversion vectorises; floor
  // does not without -fno-trapping-math)
  const int32_t ki = static_cast<int32_t>(x * 1.44269504088896341f + 128.5f) - 128;
  const float k = static_cast<float>(ki);
  float r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.f;
  const int32_t bits = (ki + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return e * scale;
}

// the sum of kLanes partial sums as a tree of vector adds (16 sequential scalar adds cost more than the products of a
// 64-element dot product)
inline float reduce(float* lanes) {
  for (int j = 0; j < 8; ++j) lanes[j] += lanes[j + 8];
  for (int j = 0; j < 4; ++j) lanes[j] += lanes[j + 4];
  for (int j = 0; j < 2; ++j) lanes[j] += lanes[j + 2];
  return lanes[0] + lanes[1];
}

template <typename T>
using S = typename Storage<T>::type;

// 1 / sqrt(mean(x^2) + eps) of one fp32 row (RMSNorm's scale, in the decode step and in training)
inline float inv_rms(const float* x, int64_t width, float eps) {
  float lanes[kLanes] = {0.f};
  int64_t i = 0;
  for (; i + kLanes <= width; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lanes[j] += x[i + j] * x[i + j];
  float sum = 0.f;
  for (; i < width; ++i) sum += x[i] * x[i];
  for (int j = 0; j < kLanes; ++j) sum += lanes[j];
  return 1.f / std::sqrt(sum / static_cast<float>(width) + eps);
}

// x [R, H] fp32 (+= delta [R, H] in T when given), then h = T((x * rsqrt(mean(x^2) + eps)) * weight)
template <typename T>
void add_rms_kernel(float* x, const S<T>* delta, const float* weight, S<T>* h, int64_t rows, int64_t width,
                    float eps) {
  using L = Storage<T>;
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * width;
    if (delta != nullptr) {
      const S<T>* dr = delta + r * width;
      for (int64_t i = 0; i < width; ++i) xr[i] += L::load(dr[i]);
    }
    const float inv = inv_rms(xr, width, eps);
    S<T>* hr = h + r * width;
    for (int64_t k = 0; k < width; ++k) hr[k] = L::store((xr[k] * inv) * weight[k]);
  }
}

// qkv [B, NH, hd] (T): rotate the query and key heads, x cos + roll(x, hd/2) sin (sign in sin, scale in both);
// queries -> q [B, heads, hd]; keys and values -> cache [2, B, kv, L, hd] at slot `slot`
template <typename T>
void rope_cache_kernel(const S<T>* qkv, const float* cos, const float* sin, S<T>* cache, S<T>* q, int64_t batch,
                       int64_t heads, int64_t kv, int64_t hd, int64_t slots, int64_t slot) {
  using L = Storage<T>;
  const int64_t all = heads + 2 * kv, half = hd / 2;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t n = 0; n < all; ++n) {
      const S<T>* x = qkv + (b * all + n) * hd;
      const float* c = cos + (b * all + n) * hd;
      const float* s = sin + (b * all + n) * hd;
      S<T>* out;
      if (n < heads) {
        out = q + (b * heads + n) * hd;
      } else {
        const int64_t which = n < heads + kv ? 0 : 1, head = n - heads - which * kv;
        out = cache + (((which * batch + b) * kv + head) * slots + slot) * hd;
      }
      if (n >= heads + kv) {  // a value head: stored as it is
        for (int64_t d = 0; d < hd; ++d) out[d] = x[d];
        continue;
      }
      for (int64_t d = 0; d < half; ++d) out[d] = L::store(L::load(x[d]) * c[d] + L::load(x[d + half]) * s[d]);
      for (int64_t d = half; d < hd; ++d) out[d] = L::store(L::load(x[d]) * c[d] + L::load(x[d - half]) * s[d]);
    }
  }
}

// softmax(T(q . k) * scale + mask) over the allowed slots, rounded to T, times the values: out [B, heads * hd] (T).
// Per (row, kv head): the group's queries are widened once, each allowed key and value row once for all of them.
// softmax of `groups` rows of `slots` scores in place, in fp32, rounded to T; kMasked entries (masked slots) become 0
template <typename T>
void softmax_rows(float* scores, int64_t groups, int64_t slots) {
  constexpr float kMasked = -3.0e38f;
  for (int64_t g = 0; g < groups; ++g) {
    float* sg = scores + g * slots;
    float lanes[kLanes];
    for (int j = 0; j < kLanes; ++j) lanes[j] = kMasked;
    int64_t l = 0;
    for (; l + kLanes <= slots; l += kLanes)
      for (int j = 0; j < kLanes; ++j) lanes[j] = sg[l + j] > lanes[j] ? sg[l + j] : lanes[j];
    float top = kMasked;
    for (; l < slots; ++l) top = sg[l] > top ? sg[l] : top;
    for (int j = 0; j < kLanes; ++j) top = lanes[j] > top ? lanes[j] : top;
    for (l = 0; l < slots; ++l) sg[l] = sg[l] == kMasked ? 0.f : fast_exp(sg[l] - top);
    float sums[kLanes] = {0.f};
    for (l = 0; l + kLanes <= slots; l += kLanes)
      for (int j = 0; j < kLanes; ++j) sums[j] += sg[l + j];
    for (; l < slots; ++l) sums[l % kLanes] += sg[l];
    const float inv = 1.f / reduce(sums);
    for (l = 0; l < slots; ++l) sg[l] = round_to<T>(sg[l] * inv);
  }
}

template <typename T>
void attention_kernel(const S<T>* q, const S<T>* cache, const bool* allowed, S<T>* out, int64_t batch, int64_t heads,
                      int64_t kv, int64_t hd, int64_t slots, float scale) {
  using L = Storage<T>;
  const int64_t groups = heads / kv;
  constexpr float kMasked = -3.0e38f;
  std::vector<float> scores(groups * slots), queries(groups * hd), row(hd), acc(groups * hd);
  for (int64_t b = 0; b < batch; ++b) {
    const bool* seen = allowed + b * slots;
    for (int64_t c = 0; c < kv; ++c) {
      const S<T>* keys = cache + ((0 * batch + b) * kv + c) * slots * hd;
      const S<T>* values = cache + ((1 * batch + b) * kv + c) * slots * hd;
      const S<T>* qc = q + (b * heads + c * groups) * hd;
      for (int64_t i = 0; i < groups * hd; ++i) queries[i] = L::load(qc[i]);
      for (int64_t l = 0; l < slots; ++l) {
        if (!seen[l]) {
          for (int64_t g = 0; g < groups; ++g) scores[g * slots + l] = kMasked;
          continue;
        }
        const S<T>* k = keys + l * hd;
        for (int64_t d = 0; d < hd; ++d) row[d] = L::load(k[d]);
        for (int64_t g = 0; g < groups; ++g) {
          const float* qg = queries.data() + g * hd;
          float lanes[kLanes] = {0.f};
          int64_t d = 0;
          for (; d + kLanes <= hd; d += kLanes)
            for (int j = 0; j < kLanes; ++j) lanes[j] += qg[d + j] * row[d + j];
          for (; d < hd; ++d) lanes[d % kLanes] += qg[d] * row[d];
          scores[g * slots + l] = round_to<T>(reduce(lanes)) * scale;
        }
      }
      softmax_rows<T>(scores.data(), groups, slots);  // over the slots, in fp32, rounded to T
      for (int64_t i = 0; i < groups * hd; ++i) acc[i] = 0.f;
      for (int64_t l = 0; l < slots; ++l) {
        if (!seen[l]) continue;
        const S<T>* v = values + l * hd;
        for (int64_t d = 0; d < hd; ++d) row[d] = L::load(v[d]);
        for (int64_t g = 0; g < groups; ++g) {
          const float p = scores[g * slots + l];
          float* ag = acc.data() + g * hd;
          for (int64_t d = 0; d < hd; ++d) ag[d] += p * row[d];
        }
      }
      S<T>* o = out + (b * heads + c * groups) * hd;
      for (int64_t i = 0; i < groups * hd; ++i) o[i] = L::store(acc[i]);
    }
  }
}

#if RLXF_SMALL_LINEAR
// 16 bf16 values widened to fp32 (exact)
inline __m512 widen16(const uint16_t* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

// `attention_kernel` for bf16 with AVX-512 (head_dim a multiple of 16, up to 128; up to 8 query heads per kv head):
// the same roundings (scores to bf16, probabilities to bf16, the output to bf16), the same sums' order in the dot
// products (16 lanes, d = j, j + 16, ..., then halved), the rows of query heads held in registers, and the batch
// rows and kv heads spread over the threads.
constexpr int64_t kMaxChunks = 8, kMaxGroups = 8;
bool attention_bf16_fits(int64_t heads, int64_t kv, int64_t hd) {
  return hd % 16 == 0 && hd / 16 <= kMaxChunks && heads / kv <= kMaxGroups;
}

template <int C>
void attention_bf16_head(const uint16_t* q, const uint16_t* keys, const uint16_t* values, const bool* seen,
                         uint16_t* out, int64_t groups, int64_t slots, float scale, float* scores) {
  constexpr float kMasked = -3.0e38f;
  constexpr int64_t hd = 16 * C;
  __m512 qv[kMaxGroups][C];
  for (int64_t g = 0; g < groups; ++g)
    for (int c = 0; c < C; ++c) qv[g][c] = widen16(q + g * hd + c * 16);
  for (int64_t l = 0; l < slots; ++l) {
    if (!seen[l]) {
      for (int64_t g = 0; g < groups; ++g) scores[g * slots + l] = kMasked;
      continue;
    }
    __m512 kr[C];
    for (int c = 0; c < C; ++c) kr[c] = widen16(keys + l * hd + c * 16);
    for (int64_t g = 0; g < groups; ++g) {
      __m512 lanes = _mm512_mul_ps(qv[g][0], kr[0]);
      for (int c = 1; c < C; ++c) lanes = _mm512_fmadd_ps(qv[g][c], kr[c], lanes);
      // halves added as `reduce` adds them: lane j + 8, then j + 4, j + 2, j + 1
      scores[g * slots + l] = round_to<c10::BFloat16>(_mm512_reduce_add_ps(lanes)) * scale;
    }
  }
  softmax_rows<c10::BFloat16>(scores, groups, slots);
  __m512 acc[kMaxGroups][C];
  for (int64_t g = 0; g < groups; ++g)
    for (int c = 0; c < C; ++c) acc[g][c] = _mm512_setzero_ps();
  for (int64_t l = 0; l < slots; ++l) {
    if (!seen[l]) continue;
    __m512 vr[C];
    for (int c = 0; c < C; ++c) vr[c] = widen16(values + l * hd + c * 16);
    for (int64_t g = 0; g < groups; ++g) {
      const __m512 p = _mm512_set1_ps(scores[g * slots + l]);
      for (int c = 0; c < C; ++c) acc[g][c] = _mm512_fmadd_ps(p, vr[c], acc[g][c]);
    }
  }
  for (int64_t g = 0; g < groups; ++g)
    for (int c = 0; c < C; ++c)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + g * hd + c * 16), (__m256i)_mm512_cvtneps_pbh(acc[g][c]));
}

void attention_bf16(const uint16_t* q, const uint16_t* cache, const bool* allowed, uint16_t* out, int64_t batch,
                    int64_t heads, int64_t kv, int64_t hd, int64_t slots, float scale) {
  const int64_t groups = heads / kv;
  at::parallel_for(0, batch * kv, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(groups * slots);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / kv, c = i % kv;
      const uint16_t* keys = cache + ((0 * batch + b) * kv + c) * slots * hd;
      const uint16_t* values = cache + ((1 * batch + b) * kv + c) * slots * hd;
      const uint16_t* qc = q + (b * heads + c * groups) * hd;
      uint16_t* o = out + (b * heads + c * groups) * hd;
      const bool* seen = allowed + b * slots;
      switch (hd / 16) {
        case 1: attention_bf16_head<1>(qc, keys, values, seen, o, groups, slots, scale, scores.data()); break;
        case 2: attention_bf16_head<2>(qc, keys, values, seen, o, groups, slots, scale, scores.data()); break;
        case 3: attention_bf16_head<3>(qc, keys, values, seen, o, groups, slots, scale, scores.data()); break;
        case 4: attention_bf16_head<4>(qc, keys, values, seen, o, groups, slots, scale, scores.data()); break;
        case 5: attention_bf16_head<5>(qc, keys, values, seen, o, groups, slots, scale, scores.data()); break;
        case 6: attention_bf16_head<6>(qc, keys, values, seen, o, groups, slots, scale, scores.data()); break;
        case 7: attention_bf16_head<7>(qc, keys, values, seen, o, groups, slots, scale, scores.data()); break;
        default: attention_bf16_head<8>(qc, keys, values, seen, o, groups, slots, scale, scores.data()); break;
      }
    }
  });
}
#endif

// gate_up [R, 2I] (T) -> T(T(silu(gate)) * up) [R, I]
template <typename T>
void silu_mul_kernel(const S<T>* gate_up, S<T>* out, int64_t rows, int64_t inner) {
  using L = Storage<T>;
  for (int64_t r = 0; r < rows; ++r) {
    const S<T>* gate = gate_up + r * 2 * inner;
    const S<T>* up = gate + inner;
    S<T>* o = out + r * inner;
    for (int64_t i = 0; i < inner; ++i) {
      const float g = L::load(gate[i]);
      o[i] = L::store(round_to<T>(g / (1.f + fast_exp(-g))) * L::load(up[i]));
    }
  }
}

// One token per row by inverse CDF: s = logits / temperature ([B, V], T), e_i = exp(s_i - max s) in fp32 (exactly 0
// where s_i = -inf, a filtered entry), running sums in float64; the token is the first i whose cumulative sum exceeds
// u * (the sum of all), V - 1 if none (what rlxf.lm.decode.sample_from_logits computes with cumsum and searchsorted).
// The sums are kept per block of 256 entries, so the search reads the block sums and then one block.
// The first entry whose running sum of `e` exceeds `target`, reading the block sums first and then one block of 256;
// vocab - 1 if none (the end of the block where rounding left the target past it)
inline int64_t draw(const float* e, const double* blocks, int64_t nblocks, int64_t vocab, double target) {
  constexpr int64_t kBlock = 256;
  double run = 0.0;
  int64_t token = vocab - 1, k = 0;
  for (; k < nblocks && run + blocks[k] <= target; ++k) run += blocks[k];
  if (k < nblocks) {
    const int64_t end = (k + 1) * kBlock < vocab ? (k + 1) * kBlock : vocab;
    for (int64_t n = k * kBlock; n < end; ++n) {
      run += static_cast<double>(e[n]);
      if (run > target) {
        token = n;
        break;
      }
    }
    if (token == vocab - 1 && run <= target) token = end - 1;  // rounding left the target past the block: its end
  }
  return token;
}

template <typename T>
void sample_kernel(const S<T>* logits, const double* u, int64_t* out, int64_t rows, int64_t vocab, float temperature) {
  using L = Storage<T>;
  constexpr int64_t kBlock = 256;
  const int64_t nblocks = (vocab + kBlock - 1) / kBlock;
  const float minus_inf = -std::numeric_limits<float>::infinity();
  std::vector<float> e(vocab);
  std::vector<double> blocks(nblocks);
  for (int64_t r = 0; r < rows; ++r) {
    const S<T>* x = logits + r * vocab;
    float lanes[kLanes];
    for (int j = 0; j < kLanes; ++j) lanes[j] = minus_inf;
    int64_t i = 0;
    for (; i + kLanes <= vocab; i += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        const float v = L::load(x[i + j]) / temperature;
        e[i + j] = v;
        lanes[j] = v > lanes[j] ? v : lanes[j];
      }
    float top = minus_inf;
    for (; i < vocab; ++i) {
      e[i] = L::load(x[i]) / temperature;
      top = e[i] > top ? e[i] : top;
    }
    for (int j = 0; j < kLanes; ++j) top = lanes[j] > top ? lanes[j] : top;
    double total = 0.0;
    for (int64_t k = 0; k < nblocks; ++k) {
      const int64_t begin = k * kBlock, end = begin + kBlock < vocab ? begin + kBlock : vocab;
      double sums[8] = {0.0};
      int64_t n = begin;
      for (; n + 8 <= end; n += 8)
        for (int j = 0; j < 8; ++j) {
          const float v = e[n + j];
          const float ex = v == minus_inf ? 0.f : fast_exp(v - top);
          e[n + j] = ex;
          sums[j] += static_cast<double>(ex);
        }
      double block = 0.0;
      for (; n < end; ++n) {
        e[n] = e[n] == minus_inf ? 0.f : fast_exp(e[n] - top);
        block += static_cast<double>(e[n]);
      }
      for (int j = 0; j < 8; ++j) block += sums[j];
      blocks[k] = block;
      total += block;
    }
    out[r] = draw(e.data(), blocks.data(), nblocks, vocab, u[r] * total);
  }
}

#if RLXF_SMALL_LINEAR
// fast_exp on 16 lanes: the same operations in the same order (mul and add apart, as the scalar code is built:
// -std=c++17 does not contract them into FMAs), so the same values
inline __m512 vexp(__m512 x) {
  x = _mm512_min_ps(x, _mm512_set1_ps(88.3f));  // min/max return their second operand for a NaN, as `x < 88.3f ?`
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
  const __m512i ki = _mm512_sub_epi32(
      _mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _mm512_set1_ps(128.5f))),
      _mm512_set1_epi32(128));
  const __m512 k = _mm512_cvtepi32_ps(ki);
  __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(k, _mm512_set1_ps(0.693359375f)));
  r = _mm512_sub_ps(r, _mm512_mul_ps(k, _mm512_set1_ps(-2.12194440e-4f)));
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.0000001201e-1f));
  const __m512 e = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r), _mm512_set1_ps(1.f));
  return _mm512_mul_ps(e, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(ki, _mm512_set1_epi32(127)), 23)));
}
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) { return widen16(p); }

// sample_kernel on 16 lanes (GCC keeps its bf16 loops scalar): the same values, maximum, exponentials, and float64
// sums in the same order (8 running sums per block of 256, each taking the 8 lanes of one half after the other),
// so the same tokens
template <typename T>
void sample_vector(const S<T>* logits, const double* u, int64_t* out, int64_t rows, int64_t vocab, float temperature) {
  using L = Storage<T>;
  constexpr int64_t kBlock = 256;
  const int64_t nblocks = (vocab + kBlock - 1) / kBlock;
  const float minus_inf = -std::numeric_limits<float>::infinity();
  const __m512 t = _mm512_set1_ps(temperature), ninf = _mm512_set1_ps(minus_inf);
  std::vector<float> e(vocab);
  std::vector<double> blocks(nblocks);
  for (int64_t r = 0; r < rows; ++r) {
    const S<T>* x = logits + r * vocab;
    __m512 lanes = ninf;
    int64_t i = 0;
    for (; i + kLanes <= vocab; i += kLanes) {
      const __m512 v = _mm512_div_ps(load16(x + i), t);
      _mm512_storeu_ps(e.data() + i, v);
      lanes = _mm512_max_ps(v, lanes);  // `v > lanes ? v : lanes`: a NaN v keeps lanes
    }
    float top = minus_inf;
    for (; i < vocab; ++i) {
      e[i] = L::load(x[i]) / temperature;
      top = e[i] > top ? e[i] : top;
    }
    alignas(64) float lane[kLanes];
    _mm512_store_ps(lane, lanes);
    for (int j = 0; j < kLanes; ++j) top = lane[j] > top ? lane[j] : top;
    const __m512 vtop = _mm512_set1_ps(top);
    double total = 0.0;
    for (int64_t k = 0; k < nblocks; ++k) {
      const int64_t begin = k * kBlock, end = begin + kBlock < vocab ? begin + kBlock : vocab;
      __m512d sums = _mm512_setzero_pd();
      int64_t n = begin;
      for (; n + 16 <= end; n += 16) {
        const __m512 v = _mm512_loadu_ps(e.data() + n);
        const __m512 ex = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, ninf, _CMP_NEQ_UQ), vexp(_mm512_sub_ps(v, vtop)));
        _mm512_storeu_ps(e.data() + n, ex);
        sums = _mm512_add_pd(sums, _mm512_cvtps_pd(_mm512_castps512_ps256(ex)));
        sums = _mm512_add_pd(sums, _mm512_cvtps_pd(_mm512_extractf32x8_ps(ex, 1)));
      }
      alignas(64) double sum8[8];
      _mm512_store_pd(sum8, sums);
      for (; n + 8 <= end; n += 8)
        for (int j = 0; j < 8; ++j) {
          const float v = e[n + j];
          const float ex = v == minus_inf ? 0.f : fast_exp(v - top);
          e[n + j] = ex;
          sum8[j] += static_cast<double>(ex);
        }
      double block = 0.0;
      for (; n < end; ++n) {
        e[n] = e[n] == minus_inf ? 0.f : fast_exp(e[n] - top);
        block += static_cast<double>(e[n]);
      }
      for (int j = 0; j < 8; ++j) block += sum8[j];
      blocks[k] = block;
      total += block;
    }
    out[r] = draw(e.data(), blocks.data(), nblocks, vocab, u[r] * total);
  }
}
#endif

// Log-probabilities of the targets under softmax(logits / temperature), one row of logits per target, and their
// gradient (PPO's policy loss reads only these, never the whole distribution). Rows are [batch, positions] of a
// [batch, length, vocab] tensor whose last dimension is contiguous; `offset` is the first position used.
// Forward: lse = log sum exp(x / t) (fp32, blocks of 256 summed in double), logprob = x[target] / t - lse, where
// x / t is x * (1 / t) (exact for t = 1; within an ulp of PyTorch's x / t otherwise).
// Backward: d logprob / d x_i = (1[i = target] - exp(x_i / t - lse)) / t, times the incoming gradient, rounded to T;
// the positions before `offset` and after the last used one get 0.
// log sum exp(x / t) of one row (outside the parallel lambda, with restrict pointers, so that its loops vectorise)
template <typename T>
__attribute__((noinline)) float row_lse(const S<T>* __restrict x, int64_t vocab, float temperature) {
  using L = Storage<T>;
  constexpr int64_t kBlock = 256;
  const float inv = 1.f / temperature;
  float lanes[kLanes];
  for (int j = 0; j < kLanes; ++j) lanes[j] = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= vocab; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const float v = L::load(x[i + j]);
      lanes[j] = v > lanes[j] ? v : lanes[j];
    }
  float top = -std::numeric_limits<float>::infinity();
  for (; i < vocab; ++i) top = L::load(x[i]) > top ? L::load(x[i]) : top;
  for (int j = 0; j < kLanes; ++j) top = lanes[j] > top ? lanes[j] : top;
  top = top / temperature;
  double total = 0.0;
  for (int64_t k = 0; k < vocab; k += kBlock) {
    const int64_t stop = k + kBlock < vocab ? k + kBlock : vocab;
    float sums[kLanes] = {0.f};
    int64_t n = k;
    for (; n + kLanes <= stop; n += kLanes)
      for (int j = 0; j < kLanes; ++j) sums[j] += fast_exp(L::load(x[n + j]) * inv - top);
    float block = 0.f;
    for (; n < stop; ++n) block += fast_exp(L::load(x[n]) * inv - top);
    total += static_cast<double>(block + reduce(sums));
  }
  return top + static_cast<float>(std::log(total));
}

// o_i = T(-g exp(x_i / t - lse)) for one row
template <typename T>
__attribute__((noinline)) void row_softmax_grad(const S<T>* __restrict x, S<T>* __restrict o, int64_t vocab, float inv, float lse, float g) {
  using L = Storage<T>;
  for (int64_t i = 0; i < vocab; ++i) o[i] = L::store(-g * fast_exp(L::load(x[i]) * inv - lse));
}

template <typename T>
void target_logprobs_kernel(const S<T>* logits, const int64_t* targets, float* logprob, float* lse, int64_t batch,
                            int64_t positions, int64_t offset, int64_t vocab, int64_t batch_stride,
                            int64_t position_stride, float temperature) {
  using L = Storage<T>;
  at::parallel_for(0, batch * positions, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / positions, p = row % positions;
      const S<T>* x = logits + b * batch_stride + (offset + p) * position_stride;
      const float norm = row_lse<T>(x, vocab, temperature);
      lse[row] = norm;
      logprob[row] = L::load(x[targets[row]]) * (1.f / temperature) - norm;
    }
  });
}

template <typename T>
void target_logprobs_backward_kernel(const S<T>* logits, const int64_t* targets, const float* lse, const float* grad,
                                     S<T>* out, int64_t batch, int64_t positions, int64_t offset, int64_t length,
                                     int64_t vocab, int64_t batch_stride, int64_t position_stride, float temperature) {
  using L = Storage<T>;
  const float inv = 1.f / temperature;
  at::parallel_for(0, batch * length, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / length, p = row % length - offset;
      S<T>* o = out + row * vocab;
      if (p < 0 || p >= positions) {
        std::memset(o, 0, vocab * sizeof(S<T>));
        continue;
      }
      const int64_t r = b * positions + p;
      const S<T>* x = logits + b * batch_stride + (offset + p) * position_stride;
      const float g = grad[r] * inv, norm = lse[r];
      row_softmax_grad<T>(x, o, vocab, inv, norm, g);
      const int64_t target = targets[r];
      o[target] = L::store(g * (1.f - fast_exp(L::load(x[target]) * inv - norm)));
    }
  });
}

// ---- The PPO update's forwards and backwards (rlxf.lm.kernels): RMSNorm, SiLU * up and RoPE, each one pass where
// PyTorch runs 5 to 12 operations, with the roundings the eager operations make.

// RMSNorm of fp32 rows: y = w * (x * rstd), rstd = 1 / sqrt(mean(x^2) + eps) (kept for the backward)
void rms_norm_rows(const float* __restrict x, const float* __restrict w, float* __restrict y, float* rstd,
                   int64_t rows, int64_t width, float eps) {
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * width;
      const float inv = inv_rms(xr, width, eps);
      rstd[r] = inv;
      float* yr = y + r * width;
      for (int64_t k = 0; k < width; ++k) yr[k] = w[k] * (xr[k] * inv);
    }
  });
}

// its input gradient: dx = rstd * (w g - x_hat mean(w g x_hat)), x_hat = x rstd
void rms_norm_backward_rows(const float* __restrict x, const float* __restrict w, const float* __restrict rstd,
                            const float* __restrict g, float* __restrict dx, int64_t rows, int64_t width) {
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * width;
      const float* gr = g + r * width;
      const float inv = rstd[r];
      float lanes[kLanes] = {0.f};
      int64_t i = 0;
      for (; i + kLanes <= width; i += kLanes)
        for (int j = 0; j < kLanes; ++j) lanes[j] += w[i + j] * gr[i + j] * xr[i + j];
      float dot = 0.f;
      for (; i < width; ++i) dot += w[i] * gr[i] * xr[i];
      dot += reduce(lanes);
      const float c = dot * inv * inv / static_cast<float>(width);  // rstd^2 mean(w g x): x c = x_hat mean(w g x_hat)
      float* out = dx + r * width;
      for (int64_t k = 0; k < width; ++k) out[k] = inv * (w[k] * gr[k] - xr[k] * c);
    }
  });
}

// h = T(T(silu(g)) * u) over gate and up (T), as eager's silu then mul under autocast. The loops of the parallel
// kernels run in functions of their own, not inlined, over restrict pointers: inlined into the lambda, GCC loses the
// restrict and keeps them scalar (measured: 3 ns per element instead of 0.25)
template <typename T>
__attribute__((noinline)) void swiglu_span(const S<T>* __restrict gate, const S<T>* __restrict up, S<T>* __restrict h, int64_t n) {
  using L = Storage<T>;
  for (int64_t i = 0; i < n; ++i) {
    const float g = L::load(gate[i]);
    const float a = round_to<T>(g / (1.f + fast_exp(-g)));
    h[i] = L::store(a * L::load(up[i]));
  }
}

// its gradients: du = T(dh * T(silu(g))), da = T(dh * u), dg = T((da * s) * (1 + g (1 - s))), s = sigmoid(g) (the
// products in PyTorch's order: another association rounds differently now and then)
template <typename T>
__attribute__((noinline)) void swiglu_backward_span(const S<T>* __restrict gate, const S<T>* __restrict up, const S<T>* __restrict dh,
                          S<T>* __restrict dgate, S<T>* __restrict dup, int64_t n) {
  using L = Storage<T>;
  for (int64_t i = 0; i < n; ++i) {
    const float g = L::load(gate[i]), grad = L::load(dh[i]);
    const float s = 1.f / (1.f + fast_exp(-g));
    const float a = round_to<T>(g * s);
    dup[i] = L::store(grad * a);
    const float da = round_to<T>(grad * L::load(up[i]));
    dgate[i] = L::store((da * s) * (1.f + g * (1.f - s)));
  }
}

#if RLXF_SMALL_LINEAR
// 16 fp32 values rounded to bf16 (nearest even, as PyTorch rounds)
inline __m256i narrow16(__m512 v) { return (__m256i)_mm512_cvtneps_pbh(v); }
inline __m512 round_bf16(__m512 v) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(narrow16(v)), 16));
}

// swiglu_span and swiglu_backward_span for bf16 on 16 lanes (GCC keeps the bf16 loops scalar: 0.37 ms for 4 x 82 x
// 1,536 values on two threads, where PyTorch's silu and mul take 0.19): the same operations in the same order, so the
// same values; the last n % 16 values take the scalar loop
__attribute__((noinline)) void swiglu_span_bf16(const uint16_t* __restrict gate, const uint16_t* __restrict up,
                                                uint16_t* __restrict h, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 g = widen16(gate + i);
    const __m512 a = round_bf16(_mm512_div_ps(g, _mm512_add_ps(one, vexp(_mm512_sub_ps(_mm512_setzero_ps(), g)))));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(h + i), narrow16(_mm512_mul_ps(a, widen16(up + i))));
  }
  if (i < n) swiglu_span<c10::BFloat16>(gate + i, up + i, h + i, n - i);
}

__attribute__((noinline)) void swiglu_backward_span_bf16(const uint16_t* __restrict gate,
                                                         const uint16_t* __restrict up,
                                                         const uint16_t* __restrict dh, uint16_t* __restrict dgate,
                                                         uint16_t* __restrict dup, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 g = widen16(gate + i), grad = widen16(dh + i);
    const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, vexp(_mm512_sub_ps(_mm512_setzero_ps(), g))));
    const __m512 a = round_bf16(_mm512_mul_ps(g, s));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dup + i), narrow16(_mm512_mul_ps(grad, a)));
    const __m512 da = round_bf16(_mm512_mul_ps(grad, widen16(up + i)));
    const __m512 slope = _mm512_add_ps(one, _mm512_mul_ps(g, _mm512_sub_ps(one, s)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dgate + i), narrow16(_mm512_mul_ps(_mm512_mul_ps(da, s), slope)));
  }
  if (i < n) swiglu_backward_span<c10::BFloat16>(gate + i, up + i, dh + i, dgate + i, dup + i, n - i);
}
#endif

template <typename T>
void swiglu_rows(const S<T>* gate, const S<T>* up, S<T>* h, int64_t n) {
  at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
#if RLXF_SMALL_LINEAR
    if constexpr (std::is_same_v<T, c10::BFloat16>) {
      swiglu_span_bf16(gate + begin, up + begin, h + begin, end - begin);
      return;
    }
#endif
    swiglu_span<T>(gate + begin, up + begin, h + begin, end - begin);
  });
}

template <typename T>
void swiglu_backward_rows(const S<T>* gate, const S<T>* up, const S<T>* dh, S<T>* dgate, S<T>* dup, int64_t n) {
  at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
#if RLXF_SMALL_LINEAR
    if constexpr (std::is_same_v<T, c10::BFloat16>) {
      swiglu_backward_span_bf16(gate + begin, up + begin, dh + begin, dgate + begin, dup + begin, end - begin);
      return;
    }
#endif
    swiglu_backward_span<T>(gate + begin, up + begin, dh + begin, dgate + begin, dup + begin, end - begin);
  });
}

// RoPE of x [B, N, L, D] (any strides but a contiguous last dimension; T) with fp32 cos and sin [B, L, D]:
// y = x cos + rotate_half(x) sin in fp32 (eager's type promotion), y contiguous [B, N, L, D]
template <typename T, typename O>
void rope_rows(const S<T>* x, const float* cos, const float* sin, S<O>* y, int64_t batch, int64_t heads,
               int64_t length, int64_t dim, int64_t sb, int64_t sn, int64_t sl, float scale) {
  using L = Storage<T>;
  using LO = Storage<O>;
  const int64_t half = dim / 2;
  at::parallel_for(0, batch * heads * length, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / (heads * length), n = (row / length) % heads, l = row % length;
      const S<T>* __restrict xr = x + b * sb + n * sn + l * sl;
      const float* __restrict c = cos + (b * length + l) * dim;
      const float* __restrict s = sin + (b * length + l) * dim;
      S<O>* __restrict yr = y + row * dim;
      if (scale == 1.f) {
        for (int64_t d = 0; d < half; ++d) yr[d] = LO::store(L::load(xr[d]) * c[d] + (-L::load(xr[d + half])) * s[d]);
        for (int64_t d = half; d < dim; ++d) yr[d] = LO::store(L::load(xr[d]) * c[d] + L::load(xr[d - half]) * s[d]);
      } else {  // eager's fp32 product with the scale after the rotation, then its rounding to O
        for (int64_t d = 0; d < half; ++d)
          yr[d] = LO::store((L::load(xr[d]) * c[d] + (-L::load(xr[d + half])) * s[d]) * scale);
        for (int64_t d = half; d < dim; ++d)
          yr[d] = LO::store((L::load(xr[d]) * c[d] + L::load(xr[d - half]) * s[d]) * scale);
      }
    }
  });
}

// its input gradient from an fp32 gradient g [B, N, L, D] (any strides, contiguous last dimension), in T like
// eager's: dx = T(T(g cos) + T(rotate_half^T(g sin))), written to out [B, L, N, D] (q's layout before its transpose)
template <typename T>
void rope_backward_rows(const float* g, const float* cos, const float* sin, S<T>* out, int64_t batch, int64_t heads,
                        int64_t length, int64_t dim, int64_t sb, int64_t sn, int64_t sl) {
  using L = Storage<T>;
  const int64_t half = dim / 2;
  at::parallel_for(0, batch * heads * length, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / (heads * length), n = (row / length) % heads, l = row % length;
      const float* __restrict gr = g + b * sb + n * sn + l * sl;
      const float* __restrict c = cos + (b * length + l) * dim;
      const float* __restrict s = sin + (b * length + l) * dim;
      S<T>* __restrict o = out + ((b * length + l) * heads + n) * dim;
      for (int64_t d = 0; d < half; ++d)
        o[d] = L::store(round_to<T>(gr[d] * c[d]) + round_to<T>(gr[d + half] * s[d + half]));
      for (int64_t d = half; d < dim; ++d)
        o[d] = L::store(round_to<T>(gr[d] * c[d]) + round_to<T>(-(gr[d - half] * s[d - half])));
    }
  });
}

// f(tag) with a value of the compute dtype's C++ type: float32 and bfloat16 only
template <typename F>
void dispatch(at::ScalarType dtype, const char* name, F&& f) {
  if (dtype == at::kFloat) {
    f(float{});
  } else if (dtype == at::kBFloat16) {
    f(c10::BFloat16{});
  } else {
    TORCH_CHECK(false, name, ": the compute dtype must be float32 or bfloat16, got ", dtype);
  }
}

template <typename T>
S<T>* ptr(const at::Tensor& t) {
  return reinterpret_cast<S<T>*>(t.data_ptr<T>());
}

void check(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), name, " must be a contiguous CPU tensor");
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
}

}  // namespace

at::Tensor add_rms(at::Tensor x, c10::optional<at::Tensor> delta, at::Tensor weight, double eps,
                   at::ScalarType dtype) {
  check(x, "x", at::kFloat);
  check(weight, "weight", at::kFloat);
  const int64_t width = x.size(-1), rows = x.numel() / width;
  auto h = at::empty(x.sizes(), x.options().dtype(dtype));
  if (delta.has_value()) check(*delta, "delta", dtype);
  dispatch(dtype, "add_rms", [&](auto tag) {
    using scalar_t = decltype(tag);
    add_rms_kernel<scalar_t>(x.data_ptr<float>(), delta.has_value() ? ptr<scalar_t>(*delta) : nullptr,
                             weight.data_ptr<float>(), ptr<scalar_t>(h), rows, width, static_cast<float>(eps));
  });
  return h;
}

at::Tensor rope_cache(at::Tensor qkv, at::Tensor cos, at::Tensor sin, at::Tensor cache, int64_t heads, int64_t slot) {
  const auto dtype = cache.scalar_type();
  check(qkv, "qkv", dtype);
  check(cos, "cos", at::kFloat);
  check(sin, "sin", at::kFloat);
  check(cache, "cache", dtype);
  const int64_t batch = cache.size(1), kv = cache.size(2), slots = cache.size(3), hd = cache.size(4);
  TORCH_CHECK(qkv.numel() == batch * (heads + 2 * kv) * hd && cos.numel() == qkv.numel() && sin.numel() == qkv.numel(),
              "qkv, cos and sin must hold [batch, heads + 2 kv, head_dim] elements");
  TORCH_CHECK(slot >= 0 && slot < slots, "slot ", slot, " outside the cache's ", slots, " slots");
  auto q = at::empty({batch, heads, hd}, qkv.options());
  dispatch(dtype, "rope_cache", [&](auto tag) {
    using scalar_t = decltype(tag);
    rope_cache_kernel<scalar_t>(ptr<scalar_t>(qkv), cos.data_ptr<float>(), sin.data_ptr<float>(),
                                ptr<scalar_t>(cache), ptr<scalar_t>(q), batch, heads, kv, hd, slots, slot);
  });
  return q;
}

at::Tensor attention(at::Tensor q, at::Tensor cache, at::Tensor allowed, double scale) {
  const auto dtype = cache.scalar_type();
  check(q, "q", dtype);
  check(cache, "cache", dtype);
  check(allowed, "allowed", at::kBool);
  const int64_t batch = cache.size(1), kv = cache.size(2), slots = cache.size(3), hd = cache.size(4);
  const int64_t heads = q.size(1);
  TORCH_CHECK(q.size(0) == batch && q.size(2) == hd && heads % kv == 0, "q must be [batch, heads, head_dim]");
  TORCH_CHECK(allowed.numel() == batch * slots, "allowed must be [batch, slots]");
  auto out = at::empty({batch, 1, heads * hd}, q.options());
#if RLXF_SMALL_LINEAR
  if (dtype == at::kBFloat16 && attention_bf16_fits(heads, kv, hd)) {
    attention_bf16(ptr<c10::BFloat16>(q), ptr<c10::BFloat16>(cache), allowed.data_ptr<bool>(), ptr<c10::BFloat16>(out),
                   batch, heads, kv, hd, slots, static_cast<float>(scale));
    return out;
  }
#endif
  dispatch(dtype, "attention", [&](auto tag) {
    using scalar_t = decltype(tag);
    attention_kernel<scalar_t>(ptr<scalar_t>(q), ptr<scalar_t>(cache), allowed.data_ptr<bool>(),
                               ptr<scalar_t>(out), batch, heads, kv, hd, slots, static_cast<float>(scale));
  });
  return out;
}

at::Tensor silu_mul(at::Tensor gate_up) {
  TORCH_CHECK(gate_up.device().is_cpu() && gate_up.is_contiguous(), "gate_up must be a contiguous CPU tensor");
  const int64_t inner = gate_up.size(-1) / 2, rows = gate_up.numel() / (2 * inner);
  auto sizes = gate_up.sizes().vec();
  sizes.back() = inner;
  auto out = at::empty(sizes, gate_up.options());
  dispatch(gate_up.scalar_type(), "silu_mul", [&](auto tag) {
    using scalar_t = decltype(tag);
    silu_mul_kernel<scalar_t>(ptr<scalar_t>(gate_up), ptr<scalar_t>(out), rows, inner);
  });
  return out;
}

at::Tensor sample(at::Tensor logits, at::Tensor u, double temperature) {
  TORCH_CHECK(logits.device().is_cpu() && logits.is_contiguous() && logits.dim() == 2,
              "logits must be a contiguous 2-d CPU tensor [batch, vocab]");
  check(u, "u", at::kDouble);
  TORCH_CHECK(u.numel() == logits.size(0), "u must hold one uniform per row");
  TORCH_CHECK(temperature > 0, "temperature must be > 0");
  auto out = at::empty({logits.size(0)}, logits.options().dtype(at::kLong));
  dispatch(logits.scalar_type(), "sample", [&](auto tag) {
    using scalar_t = decltype(tag);
#if RLXF_SMALL_LINEAR
    if (VECTOR_SAMPLE) {
      sample_vector<scalar_t>(ptr<scalar_t>(logits), u.data_ptr<double>(), out.data_ptr<int64_t>(), logits.size(0),
                              logits.size(1), static_cast<float>(temperature));
      return;
    }
#endif
    sample_kernel<scalar_t>(ptr<scalar_t>(logits), u.data_ptr<double>(), out.data_ptr<int64_t>(), logits.size(0),
                            logits.size(1), static_cast<float>(temperature));
  });
  return out;
}

namespace {
void check_rows(const at::Tensor& logits, const at::Tensor& targets, int64_t offset) {
  TORCH_CHECK(logits.device().is_cpu() && logits.dim() == 3 && logits.stride(2) == 1,
              "logits must be a CPU tensor [batch, length, vocab] with a contiguous last dimension");
  TORCH_CHECK(targets.device().is_cpu() && targets.is_contiguous() && targets.scalar_type() == at::kLong &&
                  targets.dim() == 2 && targets.size(0) == logits.size(0),
              "targets must be a contiguous int64 CPU tensor [batch, positions]");
  TORCH_CHECK(offset >= 0 && offset + targets.size(1) <= logits.size(1), "positions ", offset, " to ",
              offset + targets.size(1), " lie outside the logits' ", logits.size(1), " positions");
  if (targets.numel() > 0) {
    const auto low = targets.min().item<int64_t>(), high = targets.max().item<int64_t>();
    TORCH_CHECK(low >= 0 && high < logits.size(2), "targets must be token ids in [0, ", logits.size(2), "), got ",
                low, " to ", high);
  }
}
}  // namespace

std::vector<at::Tensor> target_logprobs(at::Tensor logits, at::Tensor targets, int64_t offset, double temperature) {
  check_rows(logits, targets, offset);
  TORCH_CHECK(temperature > 0, "temperature must be > 0");
  auto logprob = at::empty(targets.sizes(), logits.options().dtype(at::kFloat));
  auto lse = at::empty(targets.sizes(), logits.options().dtype(at::kFloat));
  dispatch(logits.scalar_type(), "target_logprobs", [&](auto tag) {
    using scalar_t = decltype(tag);
    target_logprobs_kernel<scalar_t>(ptr<scalar_t>(logits), targets.data_ptr<int64_t>(), logprob.data_ptr<float>(),
                                     lse.data_ptr<float>(), targets.size(0), targets.size(1), offset, logits.size(2),
                                     logits.stride(0), logits.stride(1), static_cast<float>(temperature));
  });
  return {logprob, lse};
}

at::Tensor target_logprobs_backward(at::Tensor logits, at::Tensor targets, at::Tensor lse, at::Tensor grad,
                                    int64_t offset, double temperature) {
  check_rows(logits, targets, offset);
  check(lse, "lse", at::kFloat);
  check(grad, "grad", at::kFloat);
  TORCH_CHECK(lse.sizes() == targets.sizes() && grad.sizes() == targets.sizes(), "lse and grad must match targets");
  auto out = at::empty(logits.sizes(), logits.options().memory_format(at::MemoryFormat::Contiguous));
  dispatch(logits.scalar_type(), "target_logprobs_backward", [&](auto tag) {
    using scalar_t = decltype(tag);
    target_logprobs_backward_kernel<scalar_t>(ptr<scalar_t>(logits), targets.data_ptr<int64_t>(),
                                              lse.data_ptr<float>(), grad.data_ptr<float>(), ptr<scalar_t>(out),
                                              targets.size(0), targets.size(1), offset, logits.size(1),
                                              logits.size(2), logits.stride(0), logits.stride(1),
                                              static_cast<float>(temperature));
  });
  return out;
}

std::vector<at::Tensor> rms_norm(at::Tensor x, at::Tensor weight, double eps) {
  check(x, "x", at::kFloat);
  check(weight, "weight", at::kFloat);
  const int64_t width = x.size(-1), rows = x.numel() / width;
  TORCH_CHECK(weight.numel() == width, "weight must hold ", width, " values, got ", weight.numel());
  auto y = at::empty_like(x);
  auto rstd = at::empty({rows}, x.options());
  rms_norm_rows(x.data_ptr<float>(), weight.data_ptr<float>(), y.data_ptr<float>(), rstd.data_ptr<float>(), rows,
                width, static_cast<float>(eps));
  return {y, rstd};
}

at::Tensor rms_norm_backward(at::Tensor x, at::Tensor weight, at::Tensor rstd, at::Tensor grad) {
  check(x, "x", at::kFloat);
  check(weight, "weight", at::kFloat);
  check(rstd, "rstd", at::kFloat);
  check(grad, "grad", at::kFloat);
  const int64_t width = x.size(-1), rows = x.numel() / width;
  TORCH_CHECK(grad.sizes() == x.sizes() && rstd.numel() == rows && weight.numel() == width,
              "grad must match x, rstd hold one value per row and weight one per column");
  auto dx = at::empty_like(x);
  rms_norm_backward_rows(x.data_ptr<float>(), weight.data_ptr<float>(), rstd.data_ptr<float>(),
                         grad.data_ptr<float>(), dx.data_ptr<float>(), rows, width);
  return dx;
}

at::Tensor swiglu(at::Tensor gate, at::Tensor up) {
  const auto dtype = gate.scalar_type();
  check(gate, "gate", dtype);
  check(up, "up", dtype);
  TORCH_CHECK(gate.sizes() == up.sizes(), "gate and up must have one shape");
  auto h = at::empty_like(gate);
  dispatch(dtype, "swiglu", [&](auto tag) {
    using scalar_t = decltype(tag);
    swiglu_rows<scalar_t>(ptr<scalar_t>(gate), ptr<scalar_t>(up), ptr<scalar_t>(h), gate.numel());
  });
  return h;
}

std::vector<at::Tensor> swiglu_backward(at::Tensor gate, at::Tensor up, at::Tensor grad) {
  const auto dtype = gate.scalar_type();
  check(gate, "gate", dtype);
  check(up, "up", dtype);
  check(grad, "grad", dtype);
  TORCH_CHECK(gate.sizes() == up.sizes() && grad.sizes() == gate.sizes(), "gate, up and grad must have one shape");
  auto dgate = at::empty_like(gate), dup = at::empty_like(up);
  dispatch(dtype, "swiglu_backward", [&](auto tag) {
    using scalar_t = decltype(tag);
    swiglu_backward_rows<scalar_t>(ptr<scalar_t>(gate), ptr<scalar_t>(up), ptr<scalar_t>(grad), ptr<scalar_t>(dgate),
                                   ptr<scalar_t>(dup), gate.numel());
  });
  return {dgate, dup};
}

namespace {
void check_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const char* name) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 4 && x.stride(3) == 1 && x.size(3) % 2 == 0, name,
              " must be a CPU tensor [batch, heads, length, head_dim] with a contiguous, even last dimension");
  check(cos, "cos", at::kFloat);
  check(sin, "sin", at::kFloat);
  TORCH_CHECK(cos.dim() == 3 && cos.size(0) == x.size(0) && cos.size(1) == x.size(2) && cos.size(2) == x.size(3) &&
                  sin.sizes() == cos.sizes(),
              "cos and sin must be [batch, length, head_dim] matching ", name);
}
}  // namespace

// y = O(scale * (x cos + rotate_half(x) sin)) with the products and sums in fp32: O fp32 and scale 1 are eager's
// RoPE (fp32 by type promotion); another O or scale are what the attention then makes of it (its query scale, and the
// cast autocast gives a matmul's input), in the same order, so the same values
at::Tensor rope(at::Tensor x, at::Tensor cos, at::Tensor sin, double scale, at::ScalarType out_dtype) {
  check_rope(x, cos, sin, "x");
  auto y = at::empty(x.sizes(), x.options().dtype(out_dtype));
  dispatch(x.scalar_type(), "rope", [&](auto tag) {
    using scalar_t = decltype(tag);
    dispatch(out_dtype, "rope", [&](auto out_tag) {
      using out_t = decltype(out_tag);
      rope_rows<scalar_t, out_t>(ptr<scalar_t>(x), cos.data_ptr<float>(), sin.data_ptr<float>(), ptr<out_t>(y),
                                 x.size(0), x.size(1), x.size(2), x.size(3), x.stride(0), x.stride(1), x.stride(2),
                                 static_cast<float>(scale));
    });
  });
  return y;
}

at::Tensor rope_backward(at::Tensor grad, at::Tensor cos, at::Tensor sin, at::ScalarType dtype) {
  check_rope(grad, cos, sin, "grad");
  TORCH_CHECK(grad.scalar_type() == at::kFloat, "grad must be float32");
  const int64_t batch = grad.size(0), heads = grad.size(1), length = grad.size(2), dim = grad.size(3);
  auto out = at::empty({batch, length, heads, dim}, grad.options().dtype(dtype));
  dispatch(dtype, "rope_backward", [&](auto tag) {
    using scalar_t = decltype(tag);
    rope_backward_rows<scalar_t>(grad.data_ptr<float>(), cos.data_ptr<float>(), sin.data_ptr<float>(),
                                 ptr<scalar_t>(out), batch, heads, length, dim, grad.stride(0), grad.stride(1),
                                 grad.stride(2));
  });
  return out.transpose(1, 2);
}

// ---- bf16 matmuls of the decode loop on CPUs with AVX512-BF16 (small_pack, small_linear) -----------------------
// A decode step multiplies a few rows by every weight once: it is bound by how fast the weights stream from memory.
// oneDNN's prepacked matmul reads them at 15-20 GB/s on one core of the 2-core AMD EPYC at 4 rows, where a copy moves
// 30; `small_block` reads them in one sequential pass (16 output columns at a time, the rows broadcast from L1, every
// cache line prefetched 4 KB ahead) at 23-28 (interleaved medians over the model's 121 matrices). Prompts and large
// batches (16 rows or more) take `wide_block`: 8 rows times 48 columns a step, the weights read from L1 once per 8
// rows, at about oneDNN's GFLOP/s. Layout (`small_pack`): [N / 16][K / 2][16][2], the pairs along K of 16 output
// rows side by side, what vdpbf16ps multiplies: one instruction adds 32 products into 16 fp32 sums. The sums are
// rounded to bf16 once, as a bf16 matmul's are, but add in another order than oneDNN's (results may differ from it
// in the last bit).
constexpr int64_t kSmallRows = 8;  // rows one call of the kernels takes (more are taken 8 at a time)
constexpr int kWide = 3;  // blocks of 16 columns `wide_block` takes at once (24 sums, 3 weights, 1 row in registers)
// cache lines `small_block` prefetches ahead (64 bytes each: one step of 16 columns, a K-pair in bf16, a K in fp32)
constexpr int64_t kPrefetchLines = 64;

// f(std::integral_constant<int, M>{}) with M = min(rows, kSmallRows): the kernels take their row count as a template
// parameter
template <typename F>
void with_rows(int64_t rows, F&& f) {
  switch (std::min<int64_t>(rows, kSmallRows)) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}
#if RLXF_SMALL_LINEAR

template <int M>
void small_block(const uint32_t* __restrict x, int64_t pairs, const uint16_t* __restrict w, uint16_t* __restrict out,
                 int64_t n_total, int64_t block) {
  constexpr int U = M <= 4 ? 4 : 2;  // independent sums per row: hides the instruction's latency
  __m512 acc[U][M];
  for (int u = 0; u < U; ++u)
    for (int m = 0; m < M; ++m) acc[u][m] = _mm512_setzero_ps();
  int64_t kp = 0;
  for (; kp + U <= pairs; kp += U) {
    for (int u = 0; u < U; ++u)
      _mm_prefetch(reinterpret_cast<const char*>(w + (kp + u + kPrefetchLines) * 32), _MM_HINT_T0);
    for (int u = 0; u < U; ++u) {
      const __m512bh wv = (__m512bh)_mm512_loadu_si512(w + (kp + u) * 32);
      for (int m = 0; m < M; ++m)
        acc[u][m] = _mm512_dpbf16_ps(acc[u][m], (__m512bh)_mm512_set1_epi32(x[m * pairs + kp + u]), wv);
    }
  }
  for (; kp < pairs; ++kp) {
    const __m512bh wv = (__m512bh)_mm512_loadu_si512(w + kp * 32);
    for (int m = 0; m < M; ++m)
      acc[0][m] = _mm512_dpbf16_ps(acc[0][m], (__m512bh)_mm512_set1_epi32(x[m * pairs + kp]), wv);
  }
  for (int m = 0; m < M; ++m) {
    __m512 sum = acc[0][m];
    for (int u = 1; u < U; ++u) sum = _mm512_add_ps(sum, acc[u][m]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + m * n_total + block * 16), (__m256i)_mm512_cvtneps_pbh(sum));
  }
}

// 8 rows times NB adjacent blocks of 16 columns: NB weight loads and 8 broadcasts feed 8 * NB products a step
// (prompts and large batches: the weights are read from L1 once per 8 rows, the arithmetic bounds it)
template <int NB>
void wide_block(const uint32_t* __restrict x, int64_t pairs, const uint16_t* __restrict w, int64_t k,
                uint16_t* __restrict out, int64_t n_total, int64_t block) {
  constexpr int M = 8;
  __m512 acc[NB][M];
  for (int j = 0; j < NB; ++j)
    for (int m = 0; m < M; ++m) acc[j][m] = _mm512_setzero_ps();
  for (int64_t kp = 0; kp < pairs; ++kp) {
    __m512bh wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = (__m512bh)_mm512_loadu_si512(w + j * k * 16 + kp * 32);
    for (int m = 0; m < M; ++m) {
      const __m512bh xv = (__m512bh)_mm512_set1_epi32(x[m * pairs + kp]);
      for (int j = 0; j < NB; ++j) acc[j][m] = _mm512_dpbf16_ps(acc[j][m], xv, wv[j]);
    }
  }
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < NB; ++j)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + m * n_total + (block + j) * 16),
                          (__m256i)_mm512_cvtneps_pbh(acc[j][m]));
}

// rows r0..m of one block of 16 columns, 8 rows at a time
void narrow_rows(const uint32_t* xs, int64_t pairs, const uint16_t* wb, uint16_t* o, int64_t n, int64_t block,
                 int64_t r0, int64_t m) {
  for (int64_t r = r0; r < m; r += kSmallRows) {
    const uint32_t* xr = xs + r * pairs;
    uint16_t* orow = o + r * n;
    with_rows(m - r, [&](auto rows) { small_block<decltype(rows)::value>(xr, pairs, wb, orow, n, block); });
  }
}
#endif

// The same kernels in fp32 (CPUs with AVX-512): layout [N / 16][K][16], one fused multiply-add of 16 weights by one
// broadcast row value a step. A decode step of fp32 weights reads twice the bytes of bf16 and is as bound by them.
#if RLXF_SMALL_LINEAR_FP32
template <int M>
void small_block_fp32(const float* __restrict x, int64_t k, const float* __restrict w, float* __restrict out,
                      int64_t n_total, int64_t block) {
  constexpr int U = M <= 4 ? 4 : 2;
  __m512 acc[U][M];
  for (int u = 0; u < U; ++u)
    for (int m = 0; m < M; ++m) acc[u][m] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + U <= k; i += U) {
    for (int u = 0; u < U; ++u)
      _mm_prefetch(reinterpret_cast<const char*>(w + (i + u + kPrefetchLines) * 16), _MM_HINT_T0);
    for (int u = 0; u < U; ++u) {
      const __m512 wv = _mm512_loadu_ps(w + (i + u) * 16);
      for (int m = 0; m < M; ++m) acc[u][m] = _mm512_fmadd_ps(_mm512_set1_ps(x[m * k + i + u]), wv, acc[u][m]);
    }
  }
  for (; i < k; ++i) {
    const __m512 wv = _mm512_loadu_ps(w + i * 16);
    for (int m = 0; m < M; ++m) acc[0][m] = _mm512_fmadd_ps(_mm512_set1_ps(x[m * k + i]), wv, acc[0][m]);
  }
  for (int m = 0; m < M; ++m) {
    __m512 sum = acc[0][m];
    for (int u = 1; u < U; ++u) sum = _mm512_add_ps(sum, acc[u][m]);
    _mm512_storeu_ps(out + m * n_total + block * 16, sum);
  }
}

template <int NB>
void wide_block_fp32(const float* __restrict x, int64_t k, const float* __restrict w, float* __restrict out,
                     int64_t n_total, int64_t block) {
  constexpr int M = 8;
  // K in chunks, each summed in registers and added to the output: one long chain of K additions per sum would be
  // less accurate than a blocked matmul's (2.4x the mean error of PyTorch's fp32 matmul at K = 1,536)
  constexpr int64_t kChunk = 128;
  for (int64_t i0 = 0; i0 < k; i0 += kChunk) {
    __m512 acc[NB][M];
    for (int j = 0; j < NB; ++j)
      for (int m = 0; m < M; ++m) acc[j][m] = _mm512_setzero_ps();
    for (int64_t i = i0; i < std::min(k, i0 + kChunk); ++i) {
      __m512 wv[NB];
      for (int j = 0; j < NB; ++j) wv[j] = _mm512_loadu_ps(w + j * k * 16 + i * 16);
      for (int m = 0; m < M; ++m) {
        const __m512 xv = _mm512_set1_ps(x[m * k + i]);
        for (int j = 0; j < NB; ++j) acc[j][m] = _mm512_fmadd_ps(xv, wv[j], acc[j][m]);
      }
    }
    for (int m = 0; m < M; ++m)
      for (int j = 0; j < NB; ++j) {
        float* to = out + m * n_total + (block + j) * 16;
        _mm512_storeu_ps(to, i0 == 0 ? acc[j][m] : _mm512_add_ps(_mm512_loadu_ps(to), acc[j][m]));
      }
  }
}

void narrow_rows_fp32(const float* xs, int64_t k, const float* wb, float* o, int64_t n, int64_t block, int64_t r0,
                      int64_t m) {
  for (int64_t r = r0; r < m; r += kSmallRows) {
    const float* xr = xs + r * k;
    float* orow = o + r * n;
    with_rows(m - r, [&](auto rows) { small_block_fp32<decltype(rows)::value>(xr, k, wb, orow, n, block); });
  }
}
#endif

// whether this build has small_pack/small_linear for `dtype` (bf16: AVX512-BF16; fp32: AVX-512)
bool small_linear_supports(at::ScalarType dtype) {
  return (dtype == at::kBFloat16 && RLXF_SMALL_LINEAR) || (dtype == at::kFloat && RLXF_SMALL_LINEAR_FP32);
}

void check_small(const at::Tensor& weight) {
  TORCH_CHECK(weight.device().is_cpu() && (weight.scalar_type() == at::kBFloat16 || weight.scalar_type() == at::kFloat),
              "the weight must be a bf16 or fp32 CPU tensor");
  TORCH_CHECK(small_linear_supports(weight.scalar_type()), "small_pack/small_linear: this build has no ",
              weight.scalar_type() == at::kFloat ? "AVX-512" : "AVX512-BF16", " for ", weight.scalar_type(),
              " (check `small_linear_supports`)");
}

// weight [N, K] bf16 (N a multiple of 16, K even) or fp32 (N a multiple of 16) -> the layout above, flat
at::Tensor small_pack(const at::Tensor& weight_) {
  check_small(weight_);
  TORCH_CHECK(weight_.dim() == 2, "small_pack: the weight must be [out, in], got ", weight_.dim(), " dimensions");
  const bool bf16 = weight_.scalar_type() == at::kBFloat16;
  const int64_t n = weight_.size(0), k = weight_.size(1);
  TORCH_CHECK(n % 16 == 0 && (k % 2 == 0 || !bf16), "small_pack: out (", n, ") must be a multiple of 16",
              bf16 ? " and in (" : "", bf16 ? std::to_string(k) : "", bf16 ? ") even (bf16)" : "");
  const auto weight = weight_.contiguous();
  auto out = at::empty({n, k}, weight.options());  // [out, in] in name only: the values are laid out as above
  // 32-bit items: a bf16 K-pair, or one fp32 value
  const auto* src = reinterpret_cast<const uint32_t*>(weight.data_ptr());
  auto* dst = reinterpret_cast<uint32_t*>(out.data_ptr());
  const int64_t items = bf16 ? k / 2 : k;
  at::parallel_for(0, n / 16, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const uint32_t* rows = src + block * 16 * items;
      uint32_t* to = dst + block * items * 16;
      for (int64_t i = 0; i < items; ++i)  // 64 bytes written at a time, from 16 sequential reads
        for (int64_t j = 0; j < 16; ++j) to[i * 16 + j] = rows[j * items + i];
    }
  });
  return out;
}

// The column blocks of 16 in parallel: in groups of kWide where x has rows enough for the wide kernel (16 or more),
// `wide(first, r0)` taking 8 rows from r0 of the group's blocks, and `narrow(block, r0)` the rows left from r0 on of
// one block (all rows where the blocks go one at a time).
template <typename Wide, typename Narrow>
void small_groups(int64_t m, int64_t n, const Wide& wide, const Narrow& narrow) {
  const int64_t blocks = n / 16, group = m >= 2 * kSmallRows ? kWide : 1, groups = (blocks + group - 1) / group;
  at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const int64_t first = g * group, last = std::min(blocks, first + group);
      int64_t r0 = 0;
      if (last - first == kWide && group == kWide)
        for (; r0 + kSmallRows <= m; r0 += kSmallRows) wide(first, r0);
      for (int64_t block = first; block < last; ++block) narrow(block, r0);
    }
  });
}

// x [M, K] times the weight packed by small_pack ([N, K], the same dtype) -> [M, N] in x's dtype
at::Tensor small_linear(const at::Tensor& x_, const at::Tensor& packed, int64_t n) {
  check_small(packed);
  const bool bf16 = packed.scalar_type() == at::kBFloat16;
  TORCH_CHECK(x_.device().is_cpu() && x_.scalar_type() == packed.scalar_type() && x_.dim() == 2,
              "small_linear: x must be a 2-d ", bf16 ? "bf16" : "fp32", " CPU tensor (the packed weight's dtype)");
  const int64_t m = x_.size(0), k = x_.size(1);
  TORCH_CHECK(m >= 1, "small_linear: x has no rows");
  TORCH_CHECK(packed.dim() == 2 && packed.size(0) == n && packed.size(1) == k && n % 16 == 0 && (k % 2 == 0 || !bf16),
              "small_linear: the packed weight is ", packed.sizes(), ", not [", n, ", ", k,
              "] (x's width; out a multiple of 16, in even in bf16)");
  auto out = at::empty({m, n}, x_.options());
  const auto x = x_.contiguous();
  if (bf16) {
#if RLXF_SMALL_LINEAR
    const auto* xs = reinterpret_cast<const uint32_t*>(x.data_ptr<at::BFloat16>());
    const auto* w = reinterpret_cast<const uint16_t*>(packed.data_ptr<at::BFloat16>());
    auto* o = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
    const int64_t pairs = k / 2;
    small_groups(m, n,
        [&](int64_t first, int64_t r0) {
          wide_block<kWide>(xs + r0 * pairs, pairs, w + first * k * 16, k, o + r0 * n, n, first);
        },
        [&](int64_t block, int64_t r0) { narrow_rows(xs, pairs, w + block * k * 16, o, n, block, r0, m); });
#endif
  } else {
#if RLXF_SMALL_LINEAR_FP32
    const float* xs = x.data_ptr<float>();
    const float* w = packed.data_ptr<float>();
    float* o = out.data_ptr<float>();
    small_groups(m, n,
        [&](int64_t first, int64_t r0) {
          wide_block_fp32<kWide>(xs + r0 * k, k, w + first * k * 16, o + r0 * n, n, first);
        },
        [&](int64_t block, int64_t r0) { narrow_rows_fp32(xs, k, w + block * k * 16, o, n, block, r0, m); });
#endif
  }
  return out;
}

// whether `attention` takes its AVX-512 path (bf16, head_dim a multiple of 16 up to 128, up to 8 query heads per kv
// head, a CPU with AVX512-BF16): fast at any batch, where the portable loop is slower than PyTorch's above a few rows
bool vector_attention(at::ScalarType dtype, int64_t heads, int64_t kv, int64_t hd) {
#if RLXF_SMALL_LINEAR
  return dtype == at::kBFloat16 && kv > 0 && heads % kv == 0 && attention_bf16_fits(heads, kv, hd);
#else
  return false;
#endif
}

// the threads at::parallel_for runs `items` items on (1 in a build without OpenMP: the loops then run serially)
int64_t parallel_threads(int64_t items) {
  std::atomic<int64_t> most{0};
  at::parallel_for(0, items, 1, [&](int64_t, int64_t) {
    const int64_t mine = at::get_thread_num() + 1;
    int64_t seen = most.load();
    while (mine > seen && !most.compare_exchange_weak(seen, mine)) {
    }
  });
  return most.load();
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("add_rms", &add_rms, "x += delta; T(rms_norm(x) * weight)");
  m.def("rope_cache", &rope_cache, "RoPE of q and k, keys and values written to the cache; returns q");
  m.def("attention", &attention, "masked softmax attention of one query step over the cache");
  m.def("silu_mul", &silu_mul, "T(T(silu(gate)) * up)");
  m.def("target_logprobs", &target_logprobs, "log softmax(logits / t)[target] per row, and the log normaliser");
  m.def("target_logprobs_backward", &target_logprobs_backward, "the gradient of target_logprobs for its logits");
  m.def("rms_norm", &rms_norm, "w * (x * rstd) of fp32 rows, and rstd");
  m.def("rms_norm_backward", &rms_norm_backward, "the input gradient of rms_norm");
  m.def("swiglu", &swiglu, "T(T(silu(gate)) * up)");
  m.def("swiglu_backward", &swiglu_backward, "the gradients of swiglu for gate and up");
  m.def("rope", &rope, "out_dtype(scale * (x cos + rotate_half(x) sin)) in fp32, contiguous [batch, heads, length, head_dim]",
        pybind11::arg("x"), pybind11::arg("cos"), pybind11::arg("sin"), pybind11::arg("scale") = 1.0,
        pybind11::arg("out_dtype") = at::kFloat);
  m.def("rope_backward", &rope_backward, "the input gradient of rope in the input's dtype, in its [b, l, h, d] layout");
  m.def("sample", &sample, "one token per row of logits / temperature by inverse CDF with the given uniforms");
  m.def("parallel_threads", &parallel_threads, "the threads at::parallel_for uses for a loop of n items");
  m.def("small_pack", &small_pack, "a bf16 or fp32 [out, in] weight in small_linear's layout");
  m.def("small_linear", &small_linear, "x W^T of bf16 or fp32 rows, W packed by small_pack");
  m.def("small_linear_supports", &small_linear_supports, "whether small_pack/small_linear are built for a dtype");
  m.attr("small_linear_built") = pybind11::bool_(RLXF_SMALL_LINEAR);
  m.attr("swiglu_vector_bf16") = pybind11::bool_(RLXF_SMALL_LINEAR);
  m.def("vector_attention", &vector_attention, "whether attention runs its AVX-512 path for this dtype and shape");
}
