// Row helpers of the CPU kernels (carafe_cpu.cpp, dlu_cpu.cpp, ddf_cpu.cpp): they stage rows of the operands in
// the accumulation type, so the inner loops are contiguous multiply-adds gcc vectorises. Host only.
#pragma once

#include <algorithm>
#include <cstdint>

namespace upsample_plugin {
namespace cpu {

// acc[i] += x[i] * y[i], i < len.
template <typename acc_t>
inline void row_fma(acc_t* __restrict__ acc, const acc_t* __restrict__ x, const acc_t* __restrict__ y,
                    int64_t len) {
  for (int64_t i = 0; i < len; ++i) acc[i] += x[i] * y[i];
}

template <typename scalar_t, typename acc_t>
inline void load_row(const scalar_t* __restrict__ src, acc_t* __restrict__ dst, int64_t len) {
  for (int64_t i = 0; i < len; ++i) dst[i] = static_cast<acc_t>(src[i]);
}

template <typename scalar_t, typename acc_t>
inline void store_row(const acc_t* __restrict__ src, scalar_t* __restrict__ dst, int64_t len) {
  for (int64_t i = 0; i < len; ++i) dst[i] = static_cast<scalar_t>(src[i]);
}

// dst[(x + r)*s + j] = src[x] for x < w, j < s: a row of w low-res values, nearest-upsampled by s. dst holds
// (w + 2r)*s values whose r*s-wide borders the caller keeps 0 (the zero padding of the k x k window).
template <typename scalar_t, typename acc_t>
inline void load_upsampled_row(const scalar_t* __restrict__ src, acc_t* __restrict__ dst, int64_t w, int64_t r,
                               int64_t s) {
  acc_t* out = dst + r * s;
  if (s == 1) {
    load_row(src, out, w);
    return;
  }
  for (int64_t x = 0; x < w; ++x) {
    const acc_t v = static_cast<acc_t>(src[x]);
    for (int64_t j = 0; j < s; ++j) out[x * s + j] = v;
  }
}

// Work units per at::parallel_for chunk: about 64k multiply-adds.
inline int64_t grain(int64_t work_per_unit) {
  return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, work_per_unit));
}

}  // namespace cpu
}  // namespace upsample_plugin
