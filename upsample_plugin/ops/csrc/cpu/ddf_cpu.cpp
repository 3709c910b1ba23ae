// DDF CPU kernels (spec/ddf.md, "Custom op"; geometry and per-element definition in include/ddf_common.h).
//
// Row kernels computing the per-element sums of ddf_common.h in the same order, a whole output (or input) row
// at a time so the inner loops are contiguous (stride 1) multiply-adds the compiler vectorises:
// * forward, work unit (b, y): the k*k spatial-filter rows of output row y are staged once (in acc_t) and
//   reused for every channel; per channel, the k input rows it reads are staged and each tap (iy, ix) adds
//   F * x over its valid column range.
// * feature gradient, unit (b, py): the input row py is read by at most one output row per tap row iy; those
//   rows' spatial filters are staged, and each tap adds dout * F into the row accumulator at columns
//   x*s + (ix - r)*d. Every accumulator belongs to one unit: a gather, no atomics, bitwise reproducible.
// * spatial-filter gradient, unit (b, y): k*k accumulator rows summed over the channels in channel order.
// * channel-filter gradient, unit (b, c): k*k scalars summed over rows then columns.
#include <algorithm>
#include <string_view>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "cpu_rows.h"
#include "ddf_common.h"

namespace upsample_plugin {
namespace ddf {
namespace {

using cpu::grain;
using cpu::load_row;
using cpu::store_row;

template <typename scalar_t>
void forward_kernel(const scalar_t* feat, const scalar_t* chan, const scalar_t* spat, scalar_t* out,
                    const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, ow = geo.ow, kk = geo.kk;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w;
  at::parallel_for(0, geo.n * geo.oh, grain(geo.c * kk * ow), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> sbuf(kk * ow);  // [t][x]: spatial filter of output row y
    const int64_t pad = geo.r * geo.d, xw = pad + geo.w;  // left padding: tap pointers never precede a buffer
    std::vector<acc_t> xbuf(k * xw);  // [iy][pad + col]: input row y*s + (iy - r)*d of one channel
    std::vector<acc_t> cbuf(kk), obuf(ow);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t y = unit % geo.oh, b = unit / geo.oh;
      for (int64_t t = 0; t < kk; ++t) load_row(spat + (b * kk + t) * plane + y * ow, sbuf.data() + t * ow, ow);
      for (int64_t c = 0; c < geo.c; ++c) {
        const int64_t bc = b * geo.c + c;
        load_row(chan + bc * kk, cbuf.data(), kk);
        std::fill(obuf.begin(), obuf.end(), acc_t(0));
        for (int64_t iy = 0; iy < k; ++iy) {
          const int64_t row = y * s + (iy - geo.r) * geo.d;
          if (row < 0 || row >= geo.h) continue;
          acc_t* xrow = xbuf.data() + iy * xw + pad;
          load_row(feat + bc * src_plane + row * geo.w, xrow, geo.w);
          for (int64_t ix = 0; ix < k; ++ix) {
            const int64_t t = iy * k + ix, off = (ix - geo.r) * geo.d;
            const int64_t x0 = out_begin(off, s), x1 = out_end(off, s, geo.w, ow);
            const acc_t cv = cbuf[t];
            const acc_t* __restrict__ sp = sbuf.data() + t * ow;
            const acc_t* __restrict__ xr = xrow + off;
            acc_t* __restrict__ o = obuf.data();
            if (geo.mul) {
              if (s == 1) {
                for (int64_t x = x0; x < x1; ++x) o[x] += (sp[x] * cv) * xr[x];
              } else {
                for (int64_t x = x0; x < x1; ++x) o[x] += (sp[x] * cv) * xr[x * s];
              }
            } else {
              if (s == 1) {
                for (int64_t x = x0; x < x1; ++x) o[x] += (sp[x] + cv) * xr[x];
              } else {
                for (int64_t x = x0; x < x1; ++x) o[x] += (sp[x] + cv) * xr[x * s];
              }
            }
          }
        }
        store_row(obuf.data(), out + bc * plane + y * ow, ow);
      }
    }
  });
}

template <typename scalar_t>
void feature_grad_kernel(const scalar_t* grad, const scalar_t* chan, const scalar_t* spat, scalar_t* grad_feat,
                         const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, ow = geo.ow, kk = geo.kk;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w;
  at::parallel_for(0, geo.n * geo.h, grain(geo.c * kk * ow), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> sbuf(kk * ow);  // [t][x]: spatial filter of the output row reading py through tap row iy
    const int64_t pad = geo.r * geo.d;  // left padding: tap pointers never precede the buffer
    std::vector<acc_t> dbuf(ow), cbuf(kk), tbuf(pad + geo.w);
    std::vector<int64_t> yrow(k);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t py = unit % geo.h, b = unit / geo.h;
      for (int64_t iy = 0; iy < k; ++iy) {
        yrow[iy] = source_of(py, (iy - geo.r) * geo.d, s, geo.oh);
        if (yrow[iy] < 0) continue;
        for (int64_t ix = 0; ix < k; ++ix) {
          const int64_t t = iy * k + ix;
          load_row(spat + (b * kk + t) * plane + yrow[iy] * ow, sbuf.data() + t * ow, ow);
        }
      }
      for (int64_t c = 0; c < geo.c; ++c) {
        const int64_t bc = b * geo.c + c;
        load_row(chan + bc * kk, cbuf.data(), kk);
        std::fill(tbuf.begin(), tbuf.end(), acc_t(0));
        for (int64_t iy = 0; iy < k; ++iy) {
          if (yrow[iy] < 0) continue;
          load_row(grad + bc * plane + yrow[iy] * ow, dbuf.data(), ow);
          for (int64_t ix = 0; ix < k; ++ix) {
            const int64_t t = iy * k + ix, off = (ix - geo.r) * geo.d;
            const int64_t x0 = out_begin(off, s), x1 = out_end(off, s, geo.w, ow);
            const acc_t cv = cbuf[t];
            const acc_t* __restrict__ sp = sbuf.data() + t * ow;
            const acc_t* __restrict__ g = dbuf.data();
            acc_t* __restrict__ acc = tbuf.data() + pad + off;  // acc[x*s]: input column x*s + off
            if (geo.mul) {
              if (s == 1) {
                for (int64_t x = x0; x < x1; ++x) acc[x] += g[x] * (sp[x] * cv);
              } else {
                for (int64_t x = x0; x < x1; ++x) acc[x * s] += g[x] * (sp[x] * cv);
              }
            } else {
              if (s == 1) {
                for (int64_t x = x0; x < x1; ++x) acc[x] += g[x] * (sp[x] + cv);
              } else {
                for (int64_t x = x0; x < x1; ++x) acc[x * s] += g[x] * (sp[x] + cv);
              }
            }
          }
        }
        store_row(tbuf.data() + pad, grad_feat + bc * src_plane + py * geo.w, geo.w);
      }
    }
  });
}

template <typename scalar_t>
void spatial_grad_kernel(const scalar_t* grad, const scalar_t* feat, const scalar_t* chan, scalar_t* grad_spat,
                         const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, ow = geo.ow, kk = geo.kk;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w;
  at::parallel_for(0, geo.n * geo.oh, grain(geo.c * kk * ow), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> abuf(kk * ow);  // [t][x]
    const int64_t pad = geo.r * geo.d;  // left padding: tap pointers never precede the buffer
    std::vector<acc_t> xbuf(pad + geo.w), dbuf(ow), cbuf(kk);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t y = unit % geo.oh, b = unit / geo.oh;
      std::fill(abuf.begin(), abuf.end(), acc_t(0));
      for (int64_t c = 0; c < geo.c; ++c) {  // channel order: the same sum as spatial_grad_element
        const int64_t bc = b * geo.c + c;
        load_row(chan + bc * kk, cbuf.data(), kk);
        load_row(grad + bc * plane + y * ow, dbuf.data(), ow);
        for (int64_t iy = 0; iy < k; ++iy) {
          const int64_t row = y * s + (iy - geo.r) * geo.d;
          if (row < 0 || row >= geo.h) continue;
          load_row(feat + bc * src_plane + row * geo.w, xbuf.data() + pad, geo.w);
          for (int64_t ix = 0; ix < k; ++ix) {
            const int64_t t = iy * k + ix, off = (ix - geo.r) * geo.d;
            const int64_t x0 = out_begin(off, s), x1 = out_end(off, s, geo.w, ow);
            const acc_t cv = cbuf[t];
            const acc_t* __restrict__ g = dbuf.data();
            const acc_t* __restrict__ xr = xbuf.data() + pad + off;
            acc_t* __restrict__ a = abuf.data() + t * ow;
            if (geo.mul) {
              if (s == 1) {
                for (int64_t x = x0; x < x1; ++x) a[x] += (g[x] * xr[x]) * cv;
              } else {
                for (int64_t x = x0; x < x1; ++x) a[x] += (g[x] * xr[x * s]) * cv;
              }
            } else {
              if (s == 1) {
                for (int64_t x = x0; x < x1; ++x) a[x] += g[x] * xr[x];
              } else {
                for (int64_t x = x0; x < x1; ++x) a[x] += g[x] * xr[x * s];
              }
            }
          }
        }
      }
      for (int64_t t = 0; t < kk; ++t)  // taps outside the map stay 0
        store_row(abuf.data() + t * ow, grad_spat + (b * kk + t) * plane + y * ow, ow);
    }
  });
}

template <typename scalar_t>
void channel_grad_kernel(const scalar_t* grad, const scalar_t* feat, const scalar_t* spat, scalar_t* grad_chan,
                         const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, ow = geo.ow, kk = geo.kk;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w;
  at::parallel_for(0, geo.n * geo.c, grain(plane * kk), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> sbuf(kk * ow);  // [t][x]: spatial filter of output row y
    const int64_t pad = geo.r * geo.d;  // left padding: tap pointers never precede the buffer
    std::vector<acc_t> xbuf(pad + geo.w), dbuf(ow), acc(kk);
    for (int64_t bc = begin; bc < end; ++bc) {
      const int64_t b = bc / geo.c;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (int64_t y = 0; y < geo.oh; ++y) {  // rows, then columns: the order of channel_grad_element
        load_row(grad + bc * plane + y * ow, dbuf.data(), ow);
        for (int64_t iy = 0; iy < k; ++iy) {
          const int64_t row = y * s + (iy - geo.r) * geo.d;
          if (row < 0 || row >= geo.h) continue;
          load_row(feat + bc * src_plane + row * geo.w, xbuf.data() + pad, geo.w);
          if (geo.mul)
            for (int64_t ix = 0; ix < k; ++ix)
              load_row(spat + (b * kk + iy * k + ix) * plane + y * ow, sbuf.data() + (iy * k + ix) * ow, ow);
          for (int64_t ix = 0; ix < k; ++ix) {
            const int64_t t = iy * k + ix, off = (ix - geo.r) * geo.d;
            const int64_t x0 = out_begin(off, s), x1 = out_end(off, s, geo.w, ow);
            const acc_t* g = dbuf.data();
            const acc_t* xr = xbuf.data() + pad + off;
            const acc_t* sp = sbuf.data() + t * ow;
            acc_t a = acc[t];
            if (geo.mul) {
              for (int64_t x = x0; x < x1; ++x) a += (g[x] * xr[x * s]) * sp[x];
            } else {
              for (int64_t x = x0; x < x1; ++x) a += g[x] * xr[x * s];
            }
            acc[t] = a;
          }
        }
      }
      store_row(acc.data(), grad_chan + bc * kk, kk);
    }
  });
}

at::Tensor ddf_forward_cpu(const at::Tensor& features, const at::Tensor& channel_filter,
                           const at::Tensor& spatial_filter, int64_t kernel_size, int64_t dilation, int64_t stride,
                           c10::string_view combine) {
  const Geometry geo =
      ddf_check_forward(features, channel_filter, spatial_filter, kernel_size, dilation, stride, combine);
  check_device_type(features, "features", c10::DeviceType::CPU);
  const auto options = features.options().memory_format(at::MemoryFormat::Contiguous);
  if (geo.n * geo.c * geo.oh * geo.ow == 0) return at::zeros({geo.n, geo.c, geo.oh, geo.ow}, options);
  const at::Tensor f = features.contiguous(), cf = channel_filter.contiguous(), sf = spatial_filter.contiguous();
  at::Tensor out = at::empty({geo.n, geo.c, geo.oh, geo.ow}, options);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "ddf_forward_cpu", [&] {
    forward_kernel<scalar_t>(f.const_data_ptr<scalar_t>(), cf.const_data_ptr<scalar_t>(),
                             sf.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), geo);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ddf_backward_cpu(const at::Tensor& grad_output,
                                                                const at::Tensor& features,
                                                                const at::Tensor& channel_filter,
                                                                const at::Tensor& spatial_filter, int64_t kernel_size,
                                                                int64_t dilation, int64_t stride,
                                                                c10::string_view combine) {
  const Geometry geo = ddf_check_backward(grad_output, features, channel_filter, spatial_filter, kernel_size,
                                          dilation, stride, combine);
  check_device_type(features, "features", c10::DeviceType::CPU);
  const auto options = features.options().memory_format(at::MemoryFormat::Contiguous);
  if (grad_output.numel() == 0) {  // no output pixel: every gradient is 0
    return {at::zeros(features.sizes(), options), at::zeros(channel_filter.sizes(), options),
            at::zeros(spatial_filter.sizes(), options)};
  }
  const at::Tensor d = grad_output.contiguous(), f = features.contiguous(), cf = channel_filter.contiguous(),
                   sf = spatial_filter.contiguous();
  at::Tensor grad_features = at::empty(features.sizes(), options);
  at::Tensor grad_channel = at::empty(channel_filter.sizes(), options);
  at::Tensor grad_spatial = at::empty(spatial_filter.sizes(), options);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "ddf_backward_cpu", [&] {
    const scalar_t* dp = d.const_data_ptr<scalar_t>();
    const scalar_t* fp = f.const_data_ptr<scalar_t>();
    const scalar_t* cp = cf.const_data_ptr<scalar_t>();
    const scalar_t* sp = sf.const_data_ptr<scalar_t>();
    feature_grad_kernel<scalar_t>(dp, cp, sp, grad_features.mutable_data_ptr<scalar_t>(), geo);
    channel_grad_kernel<scalar_t>(dp, fp, sp, grad_channel.mutable_data_ptr<scalar_t>(), geo);
    spatial_grad_kernel<scalar_t>(dp, fp, cp, grad_spatial.mutable_data_ptr<scalar_t>(), geo);
  });
  return {grad_features, grad_channel, grad_spatial};
}

}  // namespace

TORCH_LIBRARY_IMPL(upsample_plugin, CPU, m) {
  m.impl("ddf_forward", &ddf_forward_cpu);
  m.impl("ddf_backward", &ddf_backward_cpu);
}

}  // namespace ddf
}  // namespace upsample_plugin
