// DDF, decoupled dynamic filter (spec/ddf.md, "Custom op"), pieces shared by the CPU and CUDA kernels.
//
//   out[b, c, y, x] = sum_{iy, ix < k} F(b, c, t, y, x) * feat[b, c, y*s + (iy - r)*d, x*s + (ix - r)*d]
//
// with t = iy*k + ix, r = (k - 1) / 2, taps outside the map skipped (zero padding), output H // s x W // s, and
// F = S[b, t, y, x] * C[b, c, t] ('mul') or S[b, t, y, x] + C[b, c, t] ('add'). All tensors contiguous NCHW;
// channel_filter (N, C, k, k) is read as (N, C, k*k), spatial_filter (N, k*k, OH, OW).
//
// * Geometry + tap ranges: which output columns/rows x of a tap read a column/row inside the map (forward,
//   filter gradients) and which output row/column reads a given input row/column through a tap (feature
//   gradient gather). Used by the CPU row kernels and the CUDA element kernels, so the boundary logic exists once.
// * Per-element functions (HOST_DEVICE): one output value, one feature-gradient value (a gather over the output
//   pixels that read the input pixel), one spatial-filter-gradient value (a channel sum) and one
//   channel-filter-gradient value (a sum over the output positions). Each is a fixed-order sum in acc_t (float
//   for float16/bfloat16). They are the CUDA kernels' bodies and the CPU kernels' scalar definition; the CPU
//   kernels compute the same sums row-wise, in the same order (no compensated summation, unlike the official
//   kernels: float64 inputs accumulate in float64, the rest in float32).
// * Host-only argument checks (ddf_check_forward / ddf_check_backward).
#pragma once

#include <string_view>
#include <vector>

#include "common.h"

namespace upsample_plugin {
namespace ddf {

struct Geometry {
  int64_t n, c, h, w;  // features (N, C, H, W)
  int64_t k, d, s;     // kernel_size, dilation, stride
  int64_t r, kk;       // (k - 1) / 2, k * k
  int64_t oh, ow;      // H // s, W // s
  bool mul;            // combine == 'mul' (else 'add')
};

// Output positions x in [out_begin, out_end) read input position x*s + off inside [0, size) (off = (i - r)*d).
HOST_DEVICE int64_t out_begin(int64_t off, int64_t s) { return off >= 0 ? 0 : (-off + s - 1) / s; }
HOST_DEVICE int64_t out_end(int64_t off, int64_t s, int64_t size, int64_t out_size) {
  const int64_t last = size - 1 - off;  // x*s <= last
  if (last < 0) return 0;
  const int64_t e = last / s + 1;
  return e < out_size ? e : out_size;
}

// The output position that reads input position p through a tap of offset off, or -1 when none does.
HOST_DEVICE int64_t source_of(int64_t p, int64_t off, int64_t s, int64_t out_size) {
  const int64_t num = p - off;
  if (num < 0 || num % s != 0) return -1;
  const int64_t o = num / s;
  return o < out_size ? o : -1;
}

// The combined filter tap from a spatial and a channel value.
template <typename acc_t>
HOST_DEVICE acc_t combine(acc_t spatial, acc_t channel, bool mul) {
  return mul ? spatial * channel : spatial + channel;
}

// out[b, c, y, x]. feat: features + (b*C + c)*H*W; chan: channel_filter + (b*C + c)*k*k;
// spat: spatial_filter + b*k*k*OH*OW.
template <typename scalar_t, typename acc_t>
HOST_DEVICE acc_t forward_element(const scalar_t* feat, const scalar_t* chan, const scalar_t* spat, int64_t y,
                                  int64_t x, const Geometry& geo) {
  const int64_t plane = geo.oh * geo.ow, pix = y * geo.ow + x;
  acc_t acc = acc_t(0);
  for (int64_t iy = 0; iy < geo.k; ++iy) {
    const int64_t row = y * geo.s + (iy - geo.r) * geo.d;
    if (row < 0 || row >= geo.h) continue;
    for (int64_t ix = 0; ix < geo.k; ++ix) {
      const int64_t col = x * geo.s + (ix - geo.r) * geo.d;
      if (col < 0 || col >= geo.w) continue;
      const int64_t t = iy * geo.k + ix;
      const acc_t f = combine<acc_t>(static_cast<acc_t>(spat[t * plane + pix]), static_cast<acc_t>(chan[t]), geo.mul);
      acc += f * static_cast<acc_t>(feat[row * geo.w + col]);
    }
  }
  return acc;
}

// d features[b, c, py, px]: a gather over the output pixels (y, x) that read (py, px), taps in (iy, ix) order;
// no atomics. grad: grad_output + (b*C + c)*OH*OW; chan, spat as in forward_element.
template <typename scalar_t, typename acc_t>
HOST_DEVICE acc_t feature_grad_element(const scalar_t* grad, const scalar_t* chan, const scalar_t* spat, int64_t py,
                                       int64_t px, const Geometry& geo) {
  const int64_t plane = geo.oh * geo.ow;
  acc_t acc = acc_t(0);
  for (int64_t iy = 0; iy < geo.k; ++iy) {
    const int64_t y = source_of(py, (iy - geo.r) * geo.d, geo.s, geo.oh);
    if (y < 0) continue;
    for (int64_t ix = 0; ix < geo.k; ++ix) {
      const int64_t x = source_of(px, (ix - geo.r) * geo.d, geo.s, geo.ow);
      if (x < 0) continue;
      const int64_t t = iy * geo.k + ix, pix = y * geo.ow + x;
      const acc_t f = combine<acc_t>(static_cast<acc_t>(spat[t * plane + pix]), static_cast<acc_t>(chan[t]), geo.mul);
      acc += static_cast<acc_t>(grad[pix]) * f;
    }
  }
  return acc;
}

// d spatial_filter[b, t, y, x] = sum_c dout[b, c, y, x] * feat[b, c, tap t of (y, x)] (* channel[b, c, t] for
// 'mul'), in channel order. grad: grad_output + b*C*OH*OW; feat: features + b*C*H*W; chan: channel_filter + b*C*k*k.
template <typename scalar_t, typename acc_t>
HOST_DEVICE acc_t spatial_grad_element(const scalar_t* grad, const scalar_t* feat, const scalar_t* chan, int64_t t,
                                       int64_t y, int64_t x, const Geometry& geo) {
  const int64_t row = y * geo.s + (t / geo.k - geo.r) * geo.d, col = x * geo.s + (t % geo.k - geo.r) * geo.d;
  acc_t acc = acc_t(0);
  if (row < 0 || row >= geo.h || col < 0 || col >= geo.w) return acc;
  const int64_t plane = geo.oh * geo.ow, src_plane = geo.h * geo.w;
  const scalar_t* g = grad + y * geo.ow + x;
  const scalar_t* f = feat + row * geo.w + col;
  for (int64_t c = 0; c < geo.c; ++c) {
    const acc_t v = static_cast<acc_t>(g[c * plane]) * static_cast<acc_t>(f[c * src_plane]);
    acc += geo.mul ? v * static_cast<acc_t>(chan[c * geo.kk + t]) : v;
  }
  return acc;
}

// The part of channel_grad_element's sum over the output rows [row_begin, row_end), rows then columns: the CUDA
// kernel sums fixed row tiles with this and then the tiles in order (two fixed-order levels, deterministic).
template <typename scalar_t, typename acc_t>
HOST_DEVICE acc_t channel_grad_rows(const scalar_t* grad, const scalar_t* feat, const scalar_t* spat, int64_t t,
                                    int64_t row_begin, int64_t row_end, const Geometry& geo) {
  const int64_t offy = (t / geo.k - geo.r) * geo.d, offx = (t % geo.k - geo.r) * geo.d;
  const int64_t yb = out_begin(offy, geo.s), ye = out_end(offy, geo.s, geo.h, geo.oh);
  const int64_t y0 = yb > row_begin ? yb : row_begin, y1 = ye < row_end ? ye : row_end;
  const int64_t x0 = out_begin(offx, geo.s), x1 = out_end(offx, geo.s, geo.w, geo.ow);
  const scalar_t* st = spat + t * geo.oh * geo.ow;
  acc_t acc = acc_t(0);
  for (int64_t y = y0; y < y1; ++y) {
    const scalar_t* g = grad + y * geo.ow;
    const scalar_t* f = feat + (y * geo.s + offy) * geo.w + offx;
    const scalar_t* sp = st + y * geo.ow;
    for (int64_t x = x0; x < x1; ++x) {
      const acc_t v = static_cast<acc_t>(g[x]) * static_cast<acc_t>(f[x * geo.s]);
      acc += geo.mul ? v * static_cast<acc_t>(sp[x]) : v;
    }
  }
  return acc;
}

// d channel_filter[b, c, t] = sum_{y, x} dout[b, c, y, x] * feat[b, c, tap t of (y, x)] (* spatial[b, t, y, x]
// for 'mul'), rows then columns. grad: grad_output + (b*C + c)*OH*OW; feat: features + (b*C + c)*H*W;
// spat: spatial_filter + b*k*k*OH*OW.
template <typename scalar_t, typename acc_t>
HOST_DEVICE acc_t channel_grad_element(const scalar_t* grad, const scalar_t* feat, const scalar_t* spat, int64_t t,
                                       const Geometry& geo) {
  return channel_grad_rows<scalar_t, acc_t>(grad, feat, spat, t, 0, geo.oh, geo);
}

// acc[t] = d spatial_filter[b, t, y, x] for the K*K taps t of output pixel (y, x): spatial_grad_element's channel
// sums, in channel order, with the accumulators in registers so each grad_output value is read once (not K*K
// times); taps outside the map get 0. grad, feat, chan as in spatial_grad_element.
template <int K, typename scalar_t, typename acc_t>
HOST_DEVICE void spatial_grad_pixel(const scalar_t* grad, const scalar_t* feat, const scalar_t* chan, int64_t y,
                                    int64_t x, const Geometry& geo, acc_t* acc) {
  const int64_t plane = geo.oh * geo.ow, src_plane = geo.h * geo.w, pix = y * geo.ow + x;
  UPSAMPLE_PLUGIN_UNROLL
  for (int t = 0; t < K * K; ++t) acc[t] = acc_t(0);
  for (int64_t c = 0; c < geo.c; ++c) {
    const acc_t g = static_cast<acc_t>(grad[c * plane + pix]);
    const scalar_t* f = feat + c * src_plane;
    UPSAMPLE_PLUGIN_UNROLL
    for (int iy = 0; iy < K; ++iy) {
      const int64_t row = y * geo.s + (iy - geo.r) * geo.d;
      if (row < 0 || row >= geo.h) continue;
      UPSAMPLE_PLUGIN_UNROLL
      for (int ix = 0; ix < K; ++ix) {
        const int64_t col = x * geo.s + (ix - geo.r) * geo.d;
        if (col < 0 || col >= geo.w) continue;
        const int t = iy * K + ix;
        const acc_t v = g * static_cast<acc_t>(f[row * geo.w + col]);
        acc[t] += geo.mul ? v * static_cast<acc_t>(chan[c * K * K + t]) : v;
      }
    }
  }
}

// ---- host-only argument checks ---------------------------------------------------------------------------

inline Geometry ddf_check_forward(const at::Tensor& features, const at::Tensor& channel_filter,
                                  const at::Tensor& spatial_filter, int64_t kernel_size, int64_t dilation,
                                  int64_t stride, std::string_view combine) {
  check_4d_float(features, "features", "(N, C, H, W)");
  check_4d_float(channel_filter, "channel_filter", "(N, C, kernel_size, kernel_size)");
  check_4d_float(spatial_filter, "spatial_filter", "(N, kernel_size**2, H // stride, W // stride)");
  check_same_device_dtype(features, "features", channel_filter, "channel_filter");
  check_same_device_dtype(features, "features", spatial_filter, "spatial_filter");
  TORCH_CHECK(kernel_size >= 1 && kernel_size % 2 == 1,
              "kernel_size must be odd and >= 1 (the filter is centred on the input pixel), got ", kernel_size);
  TORCH_CHECK(dilation >= 1, "dilation must be an integer >= 1, got ", dilation);
  TORCH_CHECK(stride >= 1, "stride must be an integer >= 1, got ", stride);
  TORCH_CHECK(combine == "mul" || combine == "add", "combine must be 'mul' or 'add', got '", combine, "'");
  Geometry geo;
  geo.n = features.size(0);
  geo.c = features.size(1);
  geo.h = features.size(2);
  geo.w = features.size(3);
  geo.k = kernel_size;
  geo.d = dilation;
  geo.s = stride;
  geo.r = (kernel_size - 1) / 2;
  geo.kk = kernel_size * kernel_size;
  geo.oh = geo.h / stride;
  geo.ow = geo.w / stride;
  geo.mul = combine == "mul";
  check_shape(channel_filter, "channel_filter", "(N, C, kernel_size, kernel_size)", {geo.n, geo.c, geo.k, geo.k},
              features);
  const std::vector<int64_t> expected_spatial{geo.n, geo.kk, geo.oh, geo.ow};
  TORCH_CHECK(spatial_filter.sizes() == at::IntArrayRef(expected_spatial),
              "spatial_filter must have shape (N, kernel_size**2, H // stride, W // stride) = ",
              at::IntArrayRef(expected_spatial), " for features of shape ", features.sizes(), " and stride=", stride,
              ", got ", spatial_filter.sizes());
  return geo;
}

inline Geometry ddf_check_backward(const at::Tensor& grad_output, const at::Tensor& features,
                                   const at::Tensor& channel_filter, const at::Tensor& spatial_filter,
                                   int64_t kernel_size, int64_t dilation, int64_t stride, std::string_view combine) {
  const Geometry geo =
      ddf_check_forward(features, channel_filter, spatial_filter, kernel_size, dilation, stride, combine);
  check_grad_output(grad_output, features, "(N, C, H // stride, W // stride)", {geo.n, geo.c, geo.oh, geo.ow});
  return geo;
}

}  // namespace ddf
}  // namespace upsample_plugin
