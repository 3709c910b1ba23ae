// CARAFE CPU kernels (spec/carafe.md; geometry and per-element definition in include/carafe_common.h).
//
// Work unit: one (n, g, y0) = a batch element, a channel group and a low-res row. Its s output rows
// p = y0*s + i all have parent row y0, so they read the same k feature rows and their masks can be staged once
// (converted to the accumulation type) and reused for every channel of the group. Feature rows are staged
// "upsampled and padded": xu[u] = x[u/s - r] (0 outside the map), so tap (a, b) of a whole output row is the
// contiguous slice xu_a[b*s : b*s + W*s] and every inner loop is a contiguous multiply-add the compiler
// vectorises. The feature gradient is the adjoint of that staging (accumulate into xu-shaped rows, then sum
// each s-block), a gather: every value is written by one work unit, so no atomics and bitwise reproducible.
#include <algorithm>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "carafe_common.h"
#include "cpu_rows.h"

namespace upsample_plugin {
namespace carafe {
namespace {

using cpu::feature_grad_row;
using cpu::grain;
using cpu::load_row;
using cpu::load_upsampled_row;
using cpu::reassemble_rows;
using cpu::row_fma;
using cpu::store_row;

template <typename scalar_t>
void forward_kernel(const scalar_t* feat, const scalar_t* mask, scalar_t* out, const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w, uw = (geo.w + 2 * r) * s;
  const int64_t units = geo.n * geo.groups * geo.h;
  at::parallel_for(0, units, grain(geo.cpg * geo.kk * s * ow), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> mbuf(geo.kk * s * ow);  // [t][i][q]: masks of the unit's s output rows
    std::vector<acc_t> xbuf(k * uw, acc_t(0));  // [a][u]: upsampled, padded feature rows y0 + a - r
    std::vector<acc_t> obuf(ow);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t y0 = unit % geo.h, ng = unit / geo.h;  // ng = n*G + g
      const int64_t a0 = tap_begin(y0, r), a1 = tap_end(y0, r, k, geo.h);
      const scalar_t* mask_g = mask + ng * geo.kk * plane + y0 * s * ow;
      for (int64_t a = a0; a < a1; ++a)
        for (int64_t b = 0; b < k; ++b)
          for (int64_t i = 0; i < s; ++i)
            load_row(mask_g + (a * k + b) * plane + i * ow, mbuf.data() + ((a * k + b) * s + i) * ow, ow);
      for (int64_t cc = 0; cc < geo.cpg; ++cc) {
        const int64_t nc = ng * geo.cpg + cc;  // n*C + c
        const scalar_t* fplane = feat + nc * src_plane;
        for (int64_t a = a0; a < a1; ++a) load_upsampled_row(fplane + (y0 + a - r) * geo.w, xbuf.data() + a * uw, geo.w, r, s);
        reassemble_rows(mbuf.data(), xbuf.data(), a0, a1, obuf.data(), out + nc * plane + y0 * s * ow, geo);
      }
    }
  });
}

template <typename scalar_t>
void mask_grad_kernel(const scalar_t* grad, const scalar_t* feat, scalar_t* grad_mask, const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w, uw = (geo.w + 2 * r) * s;
  const int64_t units = geo.n * geo.groups * geo.h;
  at::parallel_for(0, units, grain(geo.cpg * geo.kk * s * ow), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> macc(geo.kk * s * ow);  // [t][i][q]
    std::vector<acc_t> xbuf(k * uw, acc_t(0));
    std::vector<acc_t> dbuf(s * ow);           // [i][q]: grad_output rows of the unit
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t y0 = unit % geo.h, ng = unit / geo.h;
      const int64_t a0 = tap_begin(y0, r), a1 = tap_end(y0, r, k, geo.h);
      std::fill(macc.begin(), macc.end(), acc_t(0));
      for (int64_t cc = 0; cc < geo.cpg; ++cc) {  // channel order: the same sum as mask_grad_element
        const int64_t nc = ng * geo.cpg + cc;
        const scalar_t* fplane = feat + nc * src_plane;
        for (int64_t a = a0; a < a1; ++a) load_upsampled_row(fplane + (y0 + a - r) * geo.w, xbuf.data() + a * uw, geo.w, r, s);
        load_row(grad + nc * plane + y0 * s * ow, dbuf.data(), s * ow);
        for (int64_t a = a0; a < a1; ++a)
          for (int64_t b = 0; b < k; ++b)
            for (int64_t i = 0; i < s; ++i)
              row_fma(macc.data() + ((a * k + b) * s + i) * ow, dbuf.data() + i * ow, xbuf.data() + a * uw + b * s, ow);
      }
      scalar_t* out_g = grad_mask + ng * geo.kk * plane + y0 * s * ow;
      for (int64_t t = 0; t < geo.kk; ++t)  // taps outside the map (a outside [a0, a1)) stay 0
        for (int64_t i = 0; i < s; ++i) store_row(macc.data() + (t * s + i) * ow, out_g + t * plane + i * ow, ow);
    }
  });
}

template <typename scalar_t>
void feature_grad_kernel(const scalar_t* grad, const scalar_t* mask, scalar_t* grad_feat, const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w, uw = (geo.w + 2 * r) * s;
  const int64_t units = geo.n * geo.groups * geo.h;
  at::parallel_for(0, units, grain(geo.cpg * geo.kk * s * ow), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> mbuf(geo.kk * s * ow);  // [t][i][q]: masks of output row (y0 - a + r)*s + i
    std::vector<acc_t> tbuf(uw);                // xu-shaped accumulator of the low-res row y0
    std::vector<acc_t> dbuf(ow);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t y0 = unit % geo.h, ng = unit / geo.h;
      const int64_t a0 = gather_tap_begin(y0, r, geo.h), a1 = gather_tap_end(y0, r, k);
      const scalar_t* mask_g = mask + ng * geo.kk * plane;
      for (int64_t a = a0; a < a1; ++a)
        for (int64_t b = 0; b < k; ++b)
          for (int64_t i = 0; i < s; ++i)
            load_row(mask_g + (a * k + b) * plane + ((y0 - a + r) * s + i) * ow,
                     mbuf.data() + ((a * k + b) * s + i) * ow, ow);
      for (int64_t cc = 0; cc < geo.cpg; ++cc) {
        const int64_t nc = ng * geo.cpg + cc;
        feature_grad_row(grad + nc * plane, mbuf.data(), y0, a0, a1, tbuf.data(), dbuf.data(),
                         grad_feat + nc * src_plane + y0 * geo.w, geo);
      }
    }
  });
}

at::Tensor carafe_forward_cpu(const at::Tensor& features, const at::Tensor& masks, int64_t kernel_size,
                              int64_t group_size, int64_t scale_factor) {
  const Geometry geo = carafe_check_forward(features, masks, kernel_size, group_size, scale_factor);
  check_device_type(features, "features", c10::DeviceType::CPU);
  if (features.numel() == 0 || masks.numel() == 0) {
    return at::zeros({geo.n, geo.c, geo.oh, geo.ow}, features.options().memory_format(at::MemoryFormat::Contiguous));
  }
  const at::Tensor f = features.contiguous(), m = masks.contiguous();
  at::Tensor out = at::empty({geo.n, geo.c, geo.oh, geo.ow}, f.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "carafe_forward_cpu", [&] {
    forward_kernel<scalar_t>(f.const_data_ptr<scalar_t>(), m.const_data_ptr<scalar_t>(),
                             out.mutable_data_ptr<scalar_t>(), geo);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> carafe_backward_cpu(const at::Tensor& grad_output, const at::Tensor& features,
                                                       const at::Tensor& masks, int64_t kernel_size,
                                                       int64_t group_size, int64_t scale_factor) {
  const Geometry geo = carafe_check_backward(grad_output, features, masks, kernel_size, group_size, scale_factor);
  check_device_type(features, "features", c10::DeviceType::CPU);
  const auto options = features.options().memory_format(at::MemoryFormat::Contiguous);
  if (grad_output.numel() == 0) {  // no output pixel (N, C, H or W is 0): both gradients are 0
    return {at::zeros(features.sizes(), options), at::zeros(masks.sizes(), options)};
  }
  const at::Tensor d = grad_output.contiguous(), f = features.contiguous(), m = masks.contiguous();
  at::Tensor grad_features = at::empty(features.sizes(), options);
  at::Tensor grad_masks = at::empty(masks.sizes(), options);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "carafe_backward_cpu", [&] {
    feature_grad_kernel<scalar_t>(d.const_data_ptr<scalar_t>(), m.const_data_ptr<scalar_t>(),
                                  grad_features.mutable_data_ptr<scalar_t>(), geo);
    mask_grad_kernel<scalar_t>(d.const_data_ptr<scalar_t>(), f.const_data_ptr<scalar_t>(),
                               grad_masks.mutable_data_ptr<scalar_t>(), geo);
  });
  return {grad_features, grad_masks};
}

}  // namespace

TORCH_LIBRARY_IMPL(upsample_plugin, CPU, m) {
  m.impl("carafe_forward", &carafe_forward_cpu);
  m.impl("carafe_backward", &carafe_backward_cpu);
}

}  // namespace carafe
}  // namespace upsample_plugin
