// Fused CPU operations of one decode step (rlxf.lm.decode; built and loaded by rlxf.lm.fused).
//
// A decode step of a 135M model at batch 4 spends about a third of its time outside the matmuls, in some 35 small
// PyTorch operations per layer (a few microseconds of dispatch each). Four of these replace all of them but the
// matmuls (the fifth is the sampler), computing what the eager operations compute: fp32 arithmetic, results rounded
// to the compute dtype at the same points (T = float or c10::BFloat16). Reductions (the norm's sum of squares, the attention's dot products and
// softmax sum) add in another order than PyTorch's kernels, so results may differ from eager in the last bit.
#include <torch/extension.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
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
    float lanes[kLanes] = {0.f};
    int64_t i = 0;
    for (; i + kLanes <= width; i += kLanes)
      for (int j = 0; j < kLanes; ++j) lanes[j] += xr[i + j] * xr[i + j];
    float sum = 0.f;
    for (; i < width; ++i) sum += xr[i] * xr[i];
    for (int j = 0; j < kLanes; ++j) sum += lanes[j];
    const float inv = 1.f / std::sqrt(sum / static_cast<float>(width) + eps);
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
      for (int64_t g = 0; g < groups; ++g) {  // softmax over the slots, in fp32, rounded to T
        float* sg = scores.data() + g * slots;
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
    const double target = u[r] * total;
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
    out[r] = token;
  }
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
    sample_kernel<scalar_t>(ptr<scalar_t>(logits), u.data_ptr<double>(), out.data_ptr<int64_t>(), logits.size(0),
                            logits.size(1), static_cast<float>(temperature));
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("add_rms", &add_rms, "x += delta; T(rms_norm(x) * weight)");
  m.def("rope_cache", &rope_cache, "RoPE of q and k, keys and values written to the cache; returns q");
  m.def("attention", &attention, "masked softmax attention of one query step over the cache");
  m.def("silu_mul", &silu_mul, "T(T(silu(gate)) * up)");
  m.def("sample", &sample, "one token per row of logits / temperature by inverse CDF with the given uniforms");
}
