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

// ---- CARAFE-style reassembly of one channel, on rows staged by the caller (CARAFE and the fused DLU) ----------
// kbuf[((a*k + b)*s + i)*OW + q] holds the kernel of tap (a, b) for output row i of the unit (the s output rows
// of low-res row y0); only tap rows a in [a0, a1) are read. `Geo` has the fields k, r, s, w, ow.

// Forward: the unit's s output rows of one channel, out_row0 + i*OW = sum over taps of kernel * upsampled,
// zero-padded feature row y0 + a - r (xbuf[a*uw + ...], uw = (w + 2r)*s, loaded by load_upsampled_row).
template <typename scalar_t, typename acc_t, typename Geo>
inline void reassemble_rows(const acc_t* kbuf, const acc_t* xbuf, int64_t a0, int64_t a1, acc_t* obuf,
                            scalar_t* out_row0, const Geo& geo) {
  const int64_t k = geo.k, s = geo.s, ow = geo.ow, uw = (geo.w + 2 * geo.r) * s;
  for (int64_t i = 0; i < s; ++i) {
    std::fill(obuf, obuf + ow, acc_t(0));
    for (int64_t a = a0; a < a1; ++a)
      for (int64_t b = 0; b < k; ++b)
        row_fma(obuf, kbuf + ((a * k + b) * s + i) * ow, xbuf + a * uw + b * s, ow);
    store_row(obuf, out_row0 + i * ow, ow);
  }
}

// Feature gradient of low-res row y0 of one channel: output row (y0 - a + r)*s + i read it through tap row a,
// so kbuf holds, for each a in [a0, a1), the kernels of those rows (gather_tap_begin/end). grad_plane: the
// channel's grad_output plane; tbuf (uw values) and dbuf (OW values) are scratch; dst: the W gradient values.
template <typename scalar_t, typename acc_t, typename Geo>
inline void feature_grad_row(const scalar_t* grad_plane, const acc_t* kbuf, int64_t y0, int64_t a0, int64_t a1,
                             acc_t* tbuf, acc_t* dbuf, scalar_t* dst, const Geo& geo) {
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow, uw = (geo.w + 2 * r) * s;
  std::fill(tbuf, tbuf + uw, acc_t(0));
  for (int64_t a = a0; a < a1; ++a) {
    for (int64_t i = 0; i < s; ++i) {
      load_row(grad_plane + ((y0 - a + r) * s + i) * ow, dbuf, ow);
      for (int64_t b = 0; b < k; ++b) row_fma(tbuf + b * s, dbuf, kbuf + ((a * k + b) * s + i) * ow, ow);
    }
  }
  // Output column q read tap b from low-res column q/s + b - r, i.e. from tbuf[q + b*s]: sum each s-block.
  const acc_t* t = tbuf + r * s;
  for (int64_t x = 0; x < geo.w; ++x) {
    acc_t v = acc_t(0);
    for (int64_t j = 0; j < s; ++j) v += t[x * s + j];
    dst[x] = static_cast<scalar_t>(v);
  }
}

}  // namespace cpu
}  // namespace upsample_plugin
