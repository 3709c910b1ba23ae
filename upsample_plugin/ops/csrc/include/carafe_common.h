// CARAFE (spec/carafe.md) pieces shared by the CPU and CUDA kernels.
//
//   out[n, c, p, q] = sum_{a, b < k} M[n, g(c)*k*k + a*k + b, p, q] * x[n, c, p/s + a - r, q/s + b - r]
//
// with r = (k - 1) / 2, g(c) = c / (C / G) and x = 0 outside the map. All tensors are contiguous NCHW.
//
// * Geometry + tap ranges: which taps of an output row read a row inside the map (forward, mask gradient),
//   and which taps of which output rows read a given low-res row (feature gradient gather). Used by both the
//   CPU row kernels and the CUDA element kernels, so the boundary logic exists once.
// * Per-element functions (HOST_DEVICE): one output value, one feature-gradient value, one mask-gradient
//   value, each a fixed-order sum in the accumulation type acc_t (float for float16/bfloat16). They are the
//   bodies of the CUDA kernels and the CPU kernels' scalar definition; the CPU kernels compute the same sums
//   row-wise (so they vectorise), in the same tap order.
// * Host-only argument checks (carafe_check_forward / carafe_check_backward).
#pragma once

#include "common.h"

namespace upsample_plugin {
namespace carafe {

struct Geometry {
  int64_t n, c, h, w;     // features (N, C, H, W)
  int64_t k, groups, s;   // kernel_size, group_size, scale_factor
  int64_t r, cpg, kk;     // (k - 1) / 2, channels per group, k * k
  int64_t oh, ow;         // H * s, W * s
};

// Taps a in [tap_begin, tap_end) read source row base + a - r inside [0, size) (forward / mask gradient,
// base = p / s).
HOST_DEVICE int64_t tap_begin(int64_t base, int64_t r) { return base < r ? r - base : 0; }
HOST_DEVICE int64_t tap_end(int64_t base, int64_t r, int64_t k, int64_t size) {
  const int64_t e = size + r - base;
  return e < k ? e : k;
}

// Feature gradient gather: low-res row y0 is read through tap a by the output rows whose parent is
// y0 - a + r; taps a in [gather_tap_begin, gather_tap_end) have a parent inside [0, size).
HOST_DEVICE int64_t gather_tap_begin(int64_t y0, int64_t r, int64_t size) {
  const int64_t b = y0 + r - size + 1;
  return b > 0 ? b : 0;
}
HOST_DEVICE int64_t gather_tap_end(int64_t y0, int64_t r, int64_t k) {
  const int64_t e = y0 + r + 1;
  return e < k ? e : k;
}

// out[n, c, p, q]. feat: features + (n*C + c)*H*W; mask: masks + (n*G + g(c))*k*k*OH*OW.
template <typename scalar_t, typename acc_t>
HOST_DEVICE acc_t forward_element(const scalar_t* feat, const scalar_t* mask, int64_t p, int64_t q,
                                  const Geometry& geo) {
  const int64_t plane = geo.oh * geo.ow, pix = p * geo.ow + q;
  const int64_t py = p / geo.s, px = q / geo.s;
  const int64_t a0 = tap_begin(py, geo.r), a1 = tap_end(py, geo.r, geo.k, geo.h);
  const int64_t b0 = tap_begin(px, geo.r), b1 = tap_end(px, geo.r, geo.k, geo.w);
  acc_t acc = acc_t(0);
  for (int64_t a = a0; a < a1; ++a) {
    const int64_t row = (py + a - geo.r) * geo.w + px - geo.r;  // + b: the source column of tap b
    for (int64_t b = b0; b < b1; ++b) {
      acc += static_cast<acc_t>(mask[(a * geo.k + b) * plane + pix]) * static_cast<acc_t>(feat[row + b]);
    }
  }
  return acc;
}

// d features[n, c, y0, x0]: a gather over the output pixels that read (y0, x0), no atomics.
// grad: grad_output + (n*C + c)*OH*OW; mask: masks + (n*G + g(c))*k*k*OH*OW, of any type (DLU gathers with its
// sampled kernels, held in acc_t).
template <typename scalar_t, typename acc_t, typename Geo = Geometry, typename mask_t = scalar_t>
HOST_DEVICE acc_t feature_grad_element(const scalar_t* grad, const mask_t* mask, int64_t y0, int64_t x0,
                                       const Geo& geo) {
  const int64_t plane = geo.oh * geo.ow;
  const int64_t a0 = gather_tap_begin(y0, geo.r, geo.h), a1 = gather_tap_end(y0, geo.r, geo.k);
  const int64_t b0 = gather_tap_begin(x0, geo.r, geo.w), b1 = gather_tap_end(x0, geo.r, geo.k);
  acc_t acc = acc_t(0);
  for (int64_t a = a0; a < a1; ++a) {
    const int64_t prow = (y0 - a + geo.r) * geo.s;  // first output row whose parent reads y0 through tap a
    for (int64_t i = 0; i < geo.s; ++i) {
      const int64_t p = prow + i;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t qcol = (x0 - b + geo.r) * geo.s;
        const mask_t* m = mask + (a * geo.k + b) * plane + p * geo.ow + qcol;
        const scalar_t* d = grad + p * geo.ow + qcol;
        for (int64_t j = 0; j < geo.s; ++j) {
          acc += static_cast<acc_t>(d[j]) * static_cast<acc_t>(m[j]);
        }
      }
    }
  }
  return acc;
}

// d masks[n, g*k*k + a*k + b, p, q]: the channel sum over group g, in channel order.
// grad: grad_output + (n*C + g*C/G)*OH*OW; feat: features + (n*C + g*C/G)*H*W.
// Any geometry with CARAFE's fields (s, r, h, w, oh, ow, cpg) works: DLU's kernel gradient is this same sum.
template <typename scalar_t, typename acc_t, typename Geo = Geometry>
HOST_DEVICE acc_t mask_grad_element(const scalar_t* grad, const scalar_t* feat, int64_t a, int64_t b, int64_t p,
                                    int64_t q, const Geo& geo) {
  const int64_t y = p / geo.s + a - geo.r, x = q / geo.s + b - geo.r;
  acc_t acc = acc_t(0);
  if (y < 0 || y >= geo.h || x < 0 || x >= geo.w) return acc;
  const int64_t plane = geo.oh * geo.ow, src_plane = geo.h * geo.w;
  const scalar_t* d = grad + p * geo.ow + q;
  const scalar_t* f = feat + y * geo.w + x;
  for (int64_t c = 0; c < geo.cpg; ++c) {
    acc += static_cast<acc_t>(d[c * plane]) * static_cast<acc_t>(f[c * src_plane]);
  }
  return acc;
}

// ---- per-pixel functions (the CUDA kernels for the kernel sizes K of cuda::dispatch_kernel_size) ------------
// One work item is an output pixel: its K*K kernel (or K*K accumulators) is held in registers (loops over taps
// unrolled) while the item walks the group's channels, so the per-pixel values are read or written once instead of
// once per channel (or per tap). The sums are those of the per-element functions above, in the same order.

// out[c, p, q] for the channels [0, channels) that `feat` and `out` start at: sum over taps in (a, b) order of
// m[a*K + b] * x (forward_element's sum). feat: features + (n*C + c0)*H*W; out: output + (n*C + c0)*OH*OW.
template <int K, typename scalar_t, typename acc_t, typename Geo>
HOST_DEVICE void reassemble_pixel(const acc_t* m, const scalar_t* feat, scalar_t* out, int64_t channels, int64_t p,
                                  int64_t q, const Geo& geo) {
  const int64_t src_plane = geo.h * geo.w, plane = geo.oh * geo.ow, pix = p * geo.ow + q;
  const int64_t py = p / geo.s, px = q / geo.s;
  const int64_t a0 = tap_begin(py, geo.r), a1 = tap_end(py, geo.r, K, geo.h);
  const int64_t b0 = tap_begin(px, geo.r), b1 = tap_end(px, geo.r, K, geo.w);
  const int64_t corner = (py - geo.r) * geo.w + px - geo.r;  // index of tap (0, 0), negative near the border
  for (int64_t c = 0; c < channels; ++c) {
    const scalar_t* f = feat + c * src_plane;
    acc_t acc = acc_t(0);
    UPSAMPLE_PLUGIN_UNROLL
    for (int a = 0; a < K; ++a) {
      if (a < a0 || a >= a1) continue;
      UPSAMPLE_PLUGIN_UNROLL
      for (int b = 0; b < K; ++b) {
        if (b < b0 || b >= b1) continue;
        acc += m[a * K + b] * static_cast<acc_t>(f[corner + a * geo.w + b]);
      }
    }
    out[c * plane + pix] = static_cast<scalar_t>(acc);
  }
}

// acc[a*K + b] = d masks[n, g*K*K + a*K + b, p, q] (mask_grad_element's channel sum, in channel order); taps
// reading outside the map get 0. grad: grad_output + (n*C + g*C/G)*OH*OW; feat: features + (n*C + g*C/G)*H*W.
template <int K, typename scalar_t, typename acc_t, typename Geo>
HOST_DEVICE void mask_grad_pixel(const scalar_t* grad, const scalar_t* feat, int64_t p, int64_t q, const Geo& geo,
                                 acc_t* acc) {
  const int64_t src_plane = geo.h * geo.w, plane = geo.oh * geo.ow;
  const int64_t py = p / geo.s, px = q / geo.s;
  const int64_t a0 = tap_begin(py, geo.r), a1 = tap_end(py, geo.r, K, geo.h);
  const int64_t b0 = tap_begin(px, geo.r), b1 = tap_end(px, geo.r, K, geo.w);
  UPSAMPLE_PLUGIN_UNROLL
  for (int t = 0; t < K * K; ++t) acc[t] = acc_t(0);
  const int64_t corner = (py - geo.r) * geo.w + px - geo.r;  // index of tap (0, 0), negative near the border
  for (int64_t c = 0; c < geo.cpg; ++c) {
    const acc_t dv = static_cast<acc_t>(grad[c * plane + p * geo.ow + q]);
    const scalar_t* f = feat + c * src_plane;
    UPSAMPLE_PLUGIN_UNROLL
    for (int a = 0; a < K; ++a) {
      if (a < a0 || a >= a1) continue;
      UPSAMPLE_PLUGIN_UNROLL
      for (int b = 0; b < K; ++b) {
        if (b < b0 || b >= b1) continue;
        acc[a * K + b] += dv * static_cast<acc_t>(f[corner + a * geo.w + b]);
      }
    }
  }
}

// ---- host-only argument checks ---------------------------------------------------------------------------

// The arguments and geometry CARAFE and DLU share (checked after the tensors' rank, dtype and device): an odd
// kernel centred on the source pixel, channel groups dividing C, an integer ratio.
inline Geometry reassembly_geometry(const at::Tensor& features, int64_t kernel_size, int64_t group_size,
                                    int64_t scale_factor) {
  TORCH_CHECK(kernel_size >= 1 && kernel_size % 2 == 1,
              "kernel_size must be odd and >= 1 (the kernel is centred on the source pixel), got ", kernel_size);
  TORCH_CHECK(group_size >= 1, "group_size must be an integer >= 1, got ", group_size);
  TORCH_CHECK(scale_factor >= 1, "scale_factor must be an integer >= 1, got ", scale_factor);
  Geometry geo;
  geo.n = features.size(0);
  geo.c = features.size(1);
  geo.h = features.size(2);
  geo.w = features.size(3);
  geo.k = kernel_size;
  geo.groups = group_size;
  geo.s = scale_factor;
  geo.r = (kernel_size - 1) / 2;
  geo.kk = kernel_size * kernel_size;
  geo.cpg = geo.c / group_size;
  geo.oh = geo.h * scale_factor;
  geo.ow = geo.w * scale_factor;
  TORCH_CHECK(geo.c % group_size == 0, "group_size=", group_size, " must divide the channels of features (",
              geo.c, ")");
  return geo;
}

inline Geometry carafe_check_forward(const at::Tensor& features, const at::Tensor& masks, int64_t kernel_size,
                                     int64_t group_size, int64_t scale_factor) {
  constexpr const char* kMasksLayout = "(N, kernel_size**2 * group_size, H * scale_factor, W * scale_factor)";
  check_4d_float(features, "features", "(N, C, H, W)");
  check_4d_float(masks, "masks", kMasksLayout);
  check_same_device_dtype(features, "features", masks, "masks");
  const Geometry geo = reassembly_geometry(features, kernel_size, group_size, scale_factor);
  check_shape(masks, "masks", kMasksLayout, {geo.n, geo.kk * group_size, geo.oh, geo.ow}, features);
  return geo;
}

inline Geometry carafe_check_backward(const at::Tensor& grad_output, const at::Tensor& features,
                                      const at::Tensor& masks, int64_t kernel_size, int64_t group_size,
                                      int64_t scale_factor) {
  const Geometry geo = carafe_check_forward(features, masks, kernel_size, group_size, scale_factor);
  check_grad_output(grad_output, features, "(N, C, H * scale_factor, W * scale_factor)",
                    {geo.n, geo.c, geo.oh, geo.ow});
  return geo;
}

}  // namespace carafe
}  // namespace upsample_plugin
