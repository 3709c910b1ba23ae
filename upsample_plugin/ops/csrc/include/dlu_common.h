// DLU fused reassembly (spec/dlu.md, "Forward" steps 5-6) pieces shared by the CPU and CUDA kernels.
//
//   K'[g, t](p, q) = bilinear(kernel_space[n, g*k*k + t], clamp(p/s + dy), clamp(q/s + dx))
//   out[n, c, p, q] = sum_{a, b < k} K'[g(c), a*k + b](p, q) * x[n, c, p/s + a - r, q/s + b - r]
//
// with (dx, dy) = offsets[n, (g*2 + {0, 1})*s*s + (p % s)*s + q % s, p/s, q/s] in low-res pixels, positions
// clamped to [0, H-1] x [0, W-1] (grid_sample align_corners=True, padding_mode='border'), r = (k - 1) / 2,
// g(c) = c / (C / G), x = 0 outside the map. All tensors are contiguous NCHW. K' is never materialised: every
// kernel computes the taps it needs from the 4 bilinear corners of the pixel's sample point.
//
// * Geometry, the sample point of an output pixel (position, corners, weights, clamp gradient) and the bilinear
//   tap value / its position derivative. Positions reproduce the reference's rounding (normalise with
//   2/(size-1), un-normalise with (size-1)/2, as dlu_expand_kernels + grid_sample do), so the compiled op and
//   the reference take the same side of the bilinear kinks at integer positions (zero offsets, DLU's init).
// * Per-element functions (HOST_DEVICE): the definition of each value, and the bodies of the CUDA kernels for
//   kernel sizes without per-pixel kernels (cuda/dlu_cuda.cu); the CPU kernels stage the same values row-wise.
// * Host-only argument checks (dlu_check_forward / dlu_check_backward).
#pragma once

#include <cmath>

#include "carafe_common.h"
#include "common.h"

namespace upsample_plugin {
namespace dlu {

// CARAFE's geometry plus s * s (the offsets hold 2 * s * s channels per group).
struct Geometry : carafe::Geometry {
  int64_t ss;  // s * s
};

// DLU reassembles exactly as CARAFE (floor parent, zero padding): the same tap ranges.
using carafe::gather_tap_begin;
using carafe::gather_tap_end;
using carafe::tap_begin;
using carafe::tap_end;

// Index position of `pos` (low-res pixels) along an axis of `size` pixels, clamped to [0, size-1]; *grad is
// d(result)/d(pos): 1 inside, 0 where clamping is active, borders included (grid_sample's convention). The
// arithmetic is the reference's: grid = pos * (2/(size-1)) - 1, index = (grid + 1) * ((size-1)/2); a 1-pixel
// axis uses scale 0 (every position maps to the only pixel). NaN maps to 0. Every operation is rounded on its
// own (mul_rn, sub_rn, add_rn): at integer positions (zero offsets, DLU's initial state) index sits on a
// bilinear kink, and an FMA-contracted pos * scale - 1 lands 1 ulp to the other side of it, so the offset
// gradient would take the neighbouring cell's slope (up to 4 apart for random kernel spaces).
template <typename acc_t>
HOST_DEVICE acc_t axis_position(acc_t pos, int64_t size, acc_t* grad) {
  const acc_t scale = size > 1 ? static_cast<acc_t>(2.0 / static_cast<double>(size - 1)) : acc_t(0);
  const acc_t half = static_cast<acc_t>(size - 1) / acc_t(2);
  const acc_t index = mul_rn(add_rn(sub_rn(mul_rn(pos, scale), acc_t(1)), acc_t(1)), half);
  const acc_t hi = static_cast<acc_t>(size - 1);
  if (!(index > acc_t(0))) {
    *grad = acc_t(0);
    return acc_t(0);
  }
  if (index >= hi) {
    *grad = acc_t(0);
    return hi;
  }
  *grad = acc_t(1);
  return index;
}

// The bilinear sample point of one output pixel and group.
template <typename acc_t>
struct Sample {
  int64_t i00, i01, i10, i11;  // flat indices y*W + x of the corners (y0, x0), (y0, x1), (y1, x0), (y1, x1)
  acc_t wy, wx;                // fractional parts: weights of the y1 row / x1 column
  acc_t gy, gx;                // clamp gradients (0 or 1)
};

// The clamped index position (x, y) of output pixel (p, q), group g, and its clamp gradients (gx, gy).
// off: offsets + n*G*2*s*s*H*W.
template <typename scalar_t, typename acc_t>
HOST_DEVICE void sample_position(const scalar_t* off, int64_t g, int64_t p, int64_t q, const Geometry& geo, acc_t* x,
                                 acc_t* y, acc_t* gx, acc_t* gy) {
  const int64_t h = p / geo.s, w = q / geo.s, sub = (p % geo.s) * geo.s + q % geo.s;
  const int64_t plane = geo.h * geo.w, pix = h * geo.w + w;
  const acc_t dx = static_cast<acc_t>(off[((g * 2) * geo.ss + sub) * plane + pix]);
  const acc_t dy = static_cast<acc_t>(off[((g * 2 + 1) * geo.ss + sub) * plane + pix]);
  *x = axis_position<acc_t>(static_cast<acc_t>(w) + dx, geo.w, gx);
  *y = axis_position<acc_t>(static_cast<acc_t>(h) + dy, geo.h, gy);
}

// The sample at position (x, y) interpolated in the cell whose top-left corner is (y0, x0). Corners beyond the
// last row/column (weight exactly 0) are clamped onto it.
template <typename acc_t>
HOST_DEVICE void set_cell(Sample<acc_t>* sp, acc_t x, acc_t y, int64_t x0, int64_t y0, const Geometry& geo) {
  const int64_t x1 = x0 + 1 < geo.w ? x0 + 1 : x0, y1 = y0 + 1 < geo.h ? y0 + 1 : y0;
  sp->wx = x - static_cast<acc_t>(x0);
  sp->wy = y - static_cast<acc_t>(y0);
  sp->i00 = y0 * geo.w + x0;
  sp->i01 = y0 * geo.w + x1;
  sp->i10 = y1 * geo.w + x0;
  sp->i11 = y1 * geo.w + x1;
}

// off: offsets + n*G*2*s*s*H*W.
template <typename scalar_t, typename acc_t>
HOST_DEVICE Sample<acc_t> sample_point(const scalar_t* off, int64_t g, int64_t p, int64_t q, const Geometry& geo) {
  Sample<acc_t> sp;
  acc_t x, y;
  sample_position<scalar_t, acc_t>(off, g, p, q, geo, &x, &y, &sp.gx, &sp.gy);
  // x, y >= 0: truncation = floor
  set_cell<acc_t>(&sp, x, y, static_cast<int64_t>(x), static_cast<int64_t>(y), geo);
  return sp;
}

// K' value of one tap: ks = kernel_space plane of the tap (kernel_space + (n*G*k*k + g*k*k + t)*H*W).
template <typename scalar_t, typename acc_t>
HOST_DEVICE acc_t sample_tap(const scalar_t* ks, const Sample<acc_t>& sp) {
  const acc_t v00 = static_cast<acc_t>(ks[sp.i00]), v01 = static_cast<acc_t>(ks[sp.i01]);
  const acc_t v10 = static_cast<acc_t>(ks[sp.i10]), v11 = static_cast<acc_t>(ks[sp.i11]);
  const acc_t ex = acc_t(1) - sp.wx, ey = acc_t(1) - sp.wy;
  // grid_sample's CPU expression and order (nw, ne, sw, se). On the host the sum is written as the fused
  // multiply-adds that gcc contracts ATen's AVX2 grid_sample into, so that K' matches the reference bit for bit
  // there (the reference is the ground truth of the tests; this only removes ulp-level differences).
#if defined(UPSAMPLE_PLUGIN_DEVICE_CODE)
  return v00 * (ey * ex) + v01 * (ey * sp.wx) + v10 * (sp.wy * ex) + v11 * (sp.wy * sp.wx);
#else
  return std::fma(v11, sp.wy * sp.wx, std::fma(v10, sp.wy * ex, std::fma(v01, ey * sp.wx, v00 * (ey * ex))));
#endif
}

// Adds d * dK'/d(x, y) of one tap to (*dx, *dy), before the clamp gradient.
template <typename scalar_t, typename acc_t>
HOST_DEVICE void sample_tap_position_grad(const scalar_t* ks, const Sample<acc_t>& sp, acc_t d, acc_t* dx,
                                          acc_t* dy) {
  const acc_t v00 = static_cast<acc_t>(ks[sp.i00]), v01 = static_cast<acc_t>(ks[sp.i01]);
  const acc_t v10 = static_cast<acc_t>(ks[sp.i10]), v11 = static_cast<acc_t>(ks[sp.i11]);
  *dx += d * ((acc_t(1) - sp.wy) * (v01 - v00) + sp.wy * (v11 - v10));
  *dy += d * ((acc_t(1) - sp.wx) * (v10 - v00) + sp.wx * (v11 - v01));
}

// ---- per-element functions (the CUDA kernels' bodies) -------------------------------------------------------

// out[n, c, p, q]. feat: features + (n*C + c)*H*W; ks: kernel_space + (n*G + g)*k*k*H*W; off: offsets + n*G*2*s*s*H*W.
template <typename scalar_t, typename acc_t>
HOST_DEVICE acc_t forward_element(const scalar_t* feat, const scalar_t* ks, const scalar_t* off, int64_t g, int64_t p,
                                  int64_t q, const Geometry& geo) {
  const Sample<acc_t> sp = sample_point<scalar_t, acc_t>(off, g, p, q, geo);
  const int64_t plane = geo.h * geo.w;
  const int64_t py = p / geo.s, px = q / geo.s;
  const int64_t a0 = tap_begin(py, geo.r), a1 = tap_end(py, geo.r, geo.k, geo.h);
  const int64_t b0 = tap_begin(px, geo.r), b1 = tap_end(px, geo.r, geo.k, geo.w);
  acc_t acc = acc_t(0);
  for (int64_t a = a0; a < a1; ++a) {
    const int64_t row = (py + a - geo.r) * geo.w + px - geo.r;
    for (int64_t b = b0; b < b1; ++b) {
      acc += sample_tap<scalar_t, acc_t>(ks + (a * geo.k + b) * plane, sp) * static_cast<acc_t>(feat[row + b]);
    }
  }
  return acc;
}

// d features[n, c, y0, x0]: a gather over the output pixels that read (y0, x0), their kernels sampled on the fly.
// grad: grad_output + (n*C + c)*OH*OW; ks, off as in forward_element. The definition: the CUDA backward samples
// each pixel's kernel once and runs CARAFE's gather (carafe::feature_grad_element) on them, the same sum.
template <typename scalar_t, typename acc_t>
HOST_DEVICE acc_t feature_grad_element(const scalar_t* grad, const scalar_t* ks, const scalar_t* off, int64_t g,
                                       int64_t y0, int64_t x0, const Geometry& geo) {
  const int64_t plane = geo.h * geo.w;
  const int64_t a0 = gather_tap_begin(y0, geo.r, geo.h), a1 = gather_tap_end(y0, geo.r, geo.k);
  const int64_t b0 = gather_tap_begin(x0, geo.r, geo.w), b1 = gather_tap_end(x0, geo.r, geo.k);
  acc_t acc = acc_t(0);
  for (int64_t a = a0; a < a1; ++a) {
    for (int64_t i = 0; i < geo.s; ++i) {
      const int64_t p = (y0 - a + geo.r) * geo.s + i;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t qcol = (x0 - b + geo.r) * geo.s;
        for (int64_t j = 0; j < geo.s; ++j) {
          const Sample<acc_t> sp = sample_point<scalar_t, acc_t>(off, g, p, qcol + j, geo);
          acc += static_cast<acc_t>(grad[p * geo.ow + qcol + j]) *
                 sample_tap<scalar_t, acc_t>(ks + (a * geo.k + b) * plane, sp);
        }
      }
    }
  }
  return acc;
}

// dK'[n, g, a*k + b, p, q]: exactly the CARAFE mask gradient (the channel sum over group g, in channel order).
// grad: grad_output + (n*C + g*C/G)*OH*OW; feat: features + (n*C + g*C/G)*H*W.
template <typename scalar_t, typename acc_t>
HOST_DEVICE acc_t kernel_grad_element(const scalar_t* grad, const scalar_t* feat, int64_t a, int64_t b, int64_t p,
                                      int64_t q, const Geometry& geo) {
  return carafe::mask_grad_element<scalar_t, acc_t>(grad, feat, a, b, p, q, geo);
}

// d offsets (x, y) of a pixel with sample point sp and dK' values dk[t * stride], t < k*k: sum over taps, in tap
// order, of dK'_t * dK'_t/d(position), times the clamp gradient. ks: kernel_space + (n*G + g)*k*k*H*W. KK > 0:
// k*k known at compile time (dk a register array of a CUDA per-pixel kernel: the unrolled loop keeps it in
// registers); 0: geo.kk.
template <typename scalar_t, typename acc_t, typename dk_t, int KK = 0>
HOST_DEVICE void offset_grad_of_sample(const dk_t* dk, int64_t stride, const scalar_t* ks, const Sample<acc_t>& sp,
                                       const Geometry& geo, acc_t* grad_x, acc_t* grad_y) {
  const int64_t plane = geo.h * geo.w, taps = KK > 0 ? KK : geo.kk;
  acc_t dx = acc_t(0), dy = acc_t(0);
  UPSAMPLE_PLUGIN_UNROLL
  for (int64_t t = 0; t < taps; ++t) {
    sample_tap_position_grad<scalar_t, acc_t>(ks + t * plane, sp, static_cast<acc_t>(dk[t * stride]), &dx, &dy);
  }
  *grad_x = dx * sp.gx;
  *grad_y = dy * sp.gy;
}

// d offsets (x, y) of output pixel (p, q), group g: sum over taps of dK'_t * dK'_t/d(position) * clamp gradient.
// dkp: dK' + (n*G + g)*k*k*OH*OW (any type); ks, off as in forward_element. Taps in tap order.
template <typename scalar_t, typename acc_t, typename dk_t>
HOST_DEVICE void offset_grad_element(const dk_t* dkp, const scalar_t* ks, const scalar_t* off, int64_t g, int64_t p,
                                     int64_t q, const Geometry& geo, acc_t* grad_x, acc_t* grad_y) {
  const Sample<acc_t> sp = sample_point<scalar_t, acc_t>(off, g, p, q, geo);
  offset_grad_of_sample<scalar_t, acc_t, dk_t>(dkp + p * geo.ow + q, geo.oh * geo.ow, ks, sp, geo, grad_x, grad_y);
}

// d kernel_space[n, g*k*k + t, Y, X] as a gather (the CUDA kernel's body): the output pixels whose sample point
// has its top-left corner in one of the cells (Y-1..Y, X-1..X) contribute dK' times the weights of their corners
// that are (Y, X) (clamped corners included, so every contribution is counted once). order[i] - pix_base is a
// pixel p*OW + q of this (n, g), order sorted stably by cell; the pixels of cell y*W + x are
// order[start[y*W + x] .. start[y*W + x + 1]). dkp: dK' + (n*G + g)*k*k*OH*OW; off: offsets + n*G*2*s*s*H*W.
template <typename scalar_t, typename acc_t, typename dk_t>
HOST_DEVICE acc_t kernel_space_grad_element(const dk_t* dkp, const scalar_t* off, const int64_t* order,
                                            const int64_t* start, int64_t pix_base, int64_t g, int64_t t, int64_t Y,
                                            int64_t X, const Geometry& geo) {
  const int64_t target = Y * geo.w + X;
  const dk_t* dk = dkp + t * geo.oh * geo.ow;
  acc_t acc = acc_t(0);
  for (int64_t cy = Y > 0 ? Y - 1 : Y; cy <= Y; ++cy) {
    for (int64_t cx = X > 0 ? X - 1 : X; cx <= X; ++cx) {
      const int64_t cell = cy * geo.w + cx;
      for (int64_t i = start[cell]; i < start[cell + 1]; ++i) {
        const int64_t pix = order[i] - pix_base;
        // The cell is the bucket's (the sorted key), not a recomputed floor: a kernel that rounded the position
        // differently would otherwise drop the pixel's weights (its corners would match no target here).
        Sample<acc_t> sp;
        acc_t x, y;
        sample_position<scalar_t, acc_t>(off, g, pix / geo.ow, pix % geo.ow, geo, &x, &y, &sp.gx, &sp.gy);
        set_cell<acc_t>(&sp, x, y, cx, cy, geo);
        const acc_t ex = acc_t(1) - sp.wx, ey = acc_t(1) - sp.wy;
        acc_t weight = acc_t(0);
        if (sp.i00 == target) weight += ey * ex;
        if (sp.i01 == target) weight += ey * sp.wx;
        if (sp.i10 == target) weight += sp.wy * ex;
        if (sp.i11 == target) weight += sp.wy * sp.wx;
        acc += static_cast<acc_t>(dk[pix]) * weight;
      }
    }
  }
  return acc;
}

// ---- host-only argument checks ---------------------------------------------------------------------------

inline Geometry dlu_check_forward(const at::Tensor& features, const at::Tensor& kernel_space, const at::Tensor& offsets,
                                  int64_t kernel_size, int64_t group_size, int64_t scale_factor) {
  constexpr const char* kKernelSpaceLayout = "(N, kernel_size**2 * group_size, H, W)";
  constexpr const char* kOffsetsLayout = "(N, group_size * 2 * scale_factor**2, H, W)";
  check_4d_float(features, "features", "(N, C, H, W)");
  check_4d_float(kernel_space, "kernel_space", kKernelSpaceLayout);
  check_4d_float(offsets, "offsets", kOffsetsLayout);
  check_same_device_dtype(features, "features", kernel_space, "kernel_space");
  check_same_device_dtype(features, "features", offsets, "offsets");
  Geometry geo;
  static_cast<carafe::Geometry&>(geo) = carafe::reassembly_geometry(features, kernel_size, group_size, scale_factor);
  geo.ss = scale_factor * scale_factor;
  check_shape(kernel_space, "kernel_space", kKernelSpaceLayout, {geo.n, geo.kk * group_size, geo.h, geo.w}, features);
  check_shape(offsets, "offsets", kOffsetsLayout, {geo.n, group_size * 2 * geo.ss, geo.h, geo.w}, features);
  return geo;
}

inline Geometry dlu_check_backward(const at::Tensor& grad_output, const at::Tensor& features,
                                   const at::Tensor& kernel_space, const at::Tensor& offsets, int64_t kernel_size,
                                   int64_t group_size, int64_t scale_factor) {
  const Geometry geo = dlu_check_forward(features, kernel_space, offsets, kernel_size, group_size, scale_factor);
  check_grad_output(grad_output, features, "(N, C, H * scale_factor, W * scale_factor)",
                    {geo.n, geo.c, geo.oh, geo.ow});
  return geo;
}

}  // namespace dlu
}  // namespace upsample_plugin
