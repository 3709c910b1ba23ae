// CARAFE CPU kernels (spec/carafe.md; geometry and per-element definition in include/carafe_common.h).
//
// Work unit: one (n, g, y0) = a batch element, a channel group and a low-res row. Its s output rows
// p = y0*s + i all have parent row y0, so they read the same k feature rows and their masks are staged once
// (converted to the accumulation type) and reused for every channel of the group. The forward and the mask
// gradient take kRowsPerCall consecutive units per call, so that a channel block's staged feature rows serve
// all of them. The hot loops (include/cpu_reassembly_loops.h, shared with the fused DLU) are compiled per
// instruction set and chosen at run time (include/cpu_isa.h); they block channels and keep accumulators in
// vector registers. The feature gradient
// is a gather (every value is written by one work unit) and the mask gradient sums channels in order: no
// atomics, bitwise reproducible and independent of the thread count and of the instruction set.
#include <algorithm>
#include <type_traits>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "carafe_common.h"
#include "cpu_isa.h"
#include "cpu_memory.h"
#include "cpu_rows.h"

namespace upsample_plugin {
namespace carafe {
namespace {

#define UPSAMPLE_PLUGIN_ISA_KERNELS "cpu_reassembly_loops.h"
#include "cpu_isa_instantiate.h"

using cpu::grain;
using cpu::load_row;
using cpu::store_row;
using isa_base::kChannelBlock;
using isa_base::kRowsPerCall;
using isa_base::kStagedChannels;
using isa_base::staged_rows;

template <typename scalar_t>
void forward_kernel(const scalar_t* feat, const scalar_t* mask, scalar_t* out, const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w, uw = (geo.w + 2 * r) * s;
  const int64_t unit_kernels = geo.kk * s * ow;
  const int64_t chunk_grain = grain(kRowsPerCall * geo.cpg * unit_kernels);
  at::parallel_for(0, cpu::row_chunks(geo, kRowsPerCall), chunk_grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> kbufs(kRowsPerCall * unit_kernels);  // [unit][t][i][q]: masks of the units' output rows
    std::vector<acc_t> ktiles(kRowsPerCall * unit_kernels);
    std::vector<acc_t> xbuf(kStagedChannels * staged_rows(kRowsPerCall, k) * uw, acc_t(0));  // zero borders
    for (int64_t index = begin; index < end; ++index) {
      const cpu::RowChunk chunk = cpu::row_chunk(index, geo, kRowsPerCall);
      for (int64_t u = 0; u < chunk.units; ++u) {
        const int64_t y0 = chunk.y_first + u, a0 = tap_begin(y0, r), a1 = tap_end(y0, r, k, geo.h);
        const scalar_t* mask_g = mask + chunk.ng * geo.kk * plane + y0 * s * ow;
        acc_t* kbuf = kbufs.data() + u * unit_kernels;
        for (int64_t a = a0; a < a1; ++a)
          for (int64_t b = 0; b < k; ++b)
            for (int64_t i = 0; i < s; ++i)
              load_row(mask_g + (a * k + b) * plane + i * ow, kbuf + ((a * k + b) * s + i) * ow, ow);
      }
      UPSAMPLE_PLUGIN_CALL_ISA(reassemble_rows, static_cast<const acc_t*>(kbufs.data()),
                               feat + chunk.ng * geo.cpg * src_plane,
                               out + chunk.ng * geo.cpg * plane + chunk.y_first * s * ow, geo.cpg, chunk.y_first,
                               chunk.units, xbuf.data(), ktiles.data(), geo);
    }
  });
}

template <typename scalar_t>
void mask_grad_kernel(const scalar_t* grad, const scalar_t* feat, scalar_t* grad_mask, const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w, uw = (geo.w + 2 * r) * s;
  const int64_t unit_kernels = geo.kk * s * ow;
  const int64_t chunk_grain = grain(kRowsPerCall * geo.cpg * unit_kernels);
  at::parallel_for(0, cpu::row_chunks(geo, kRowsPerCall), chunk_grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> maccs(kRowsPerCall * unit_kernels);  // [unit][t][i][q]
    std::vector<acc_t> xbuf(kStagedChannels * staged_rows(kRowsPerCall, k) * uw, acc_t(0));
    for (int64_t index = begin; index < end; ++index) {
      const cpu::RowChunk chunk = cpu::row_chunk(index, geo, kRowsPerCall);
      UPSAMPLE_PLUGIN_CALL_ISA(kernel_grad_rows, grad + chunk.ng * geo.cpg * plane + chunk.y_first * s * ow,
                               feat + chunk.ng * geo.cpg * src_plane, geo.cpg, chunk.y_first, chunk.units,
                               maccs.data(), xbuf.data(), geo);
      for (int64_t u = 0; u < chunk.units; ++u) {
        const acc_t* macc = maccs.data() + u * unit_kernels;
        scalar_t* out_g = grad_mask + chunk.ng * geo.kk * plane + (chunk.y_first + u) * s * ow;
        for (int64_t t = 0; t < geo.kk; ++t)  // taps that read outside the map are 0
          for (int64_t i = 0; i < s; ++i) store_row(macc + (t * s + i) * ow, out_g + t * plane + i * ow, ow);
      }
    }
  });
}

template <typename scalar_t>
void feature_grad_kernel(const scalar_t* grad, const scalar_t* mask, scalar_t* grad_feat, const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w, pw = ow + 2 * r * s;
  const int64_t units = geo.n * geo.groups * geo.h;
  at::parallel_for(0, units, grain(geo.cpg * geo.kk * s * ow), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> kpad(geo.kk * s * pw, acc_t(0));          // [t][i][u]: masks of output row (y0-a+r)*s + i
    std::vector<acc_t> dpad(kChannelBlock * k * s * pw, acc_t(0));  // [cb][a][i][u]
    std::vector<acc_t> tbuf(kChannelBlock * ow);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t y0 = unit % geo.h, ng = unit / geo.h;
      const int64_t a0 = gather_tap_begin(y0, r, geo.h), a1 = gather_tap_end(y0, r, k);
      const scalar_t* mask_g = mask + ng * geo.kk * plane;
      for (int64_t a = a0; a < a1; ++a)
        for (int64_t b = 0; b < k; ++b)
          for (int64_t i = 0; i < s; ++i)
            load_row(mask_g + (a * k + b) * plane + ((y0 - a + r) * s + i) * ow,
                     kpad.data() + ((a * k + b) * s + i) * pw + r * s, ow);
      UPSAMPLE_PLUGIN_CALL_ISA(feature_grad_unit, grad + ng * geo.cpg * plane, kpad.data(), geo.cpg, y0, a0, a1,
                               dpad.data(), tbuf.data(), grad_feat + ng * geo.cpg * src_plane + y0 * geo.w, geo);
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
  at::Tensor out = cpu::empty_output({geo.n, geo.c, geo.oh, geo.ow}, f.options());
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
  at::Tensor grad_features = cpu::empty_output(features.sizes(), options);
  at::Tensor grad_masks = cpu::empty_output(masks.sizes(), options);
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
