// DDF CUDA kernels (spec/ddf.md, "Custom op"): grid-stride loops over work items, the per-element and per-pixel
// functions of include/ddf_common.h. No atomics: every value has one writer and a fixed summation order, so results
// are bitwise reproducible whatever the grid and the thread order. float16/bfloat16 accumulate in float32.
// * Forward: one thread per output value. Feature gradient: one thread per value, a gather over the output
//   pixels that read it.
// * Spatial-filter gradient, k in {3, 5} (cuda::dispatch_kernel_size): one work item per output pixel with k*k
//   accumulators in registers, walking the channels (each grad_output value read once, not k*k times); other k:
//   one thread per value (spatial_grad_element, the same channel-order sum).
// * Channel-filter gradient: a sum over the whole output map per (b, c, tap), i.e. few, long sums (N*C*k*k of
//   them: 4,608 for 2x256 channels, k=3, far too few threads for a large GPU if each summed the map alone).
//   Two fixed-order levels instead: one thread per (b, c, tap, tile of rows) sums its tile (channel_grad_rows,
//   rows then columns), then one thread per (b, c, tap) sums its tiles in order. Deterministic, no shared memory.
// Work indices are decomposed once per item, in 32-bit arithmetic when they fit (cuda::divmod).
#include <algorithm>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "ddf_common.h"
#include "cuda_launch.h"

namespace upsample_plugin {
namespace ddf {
namespace {

using cuda::blocks_for;
using cuda::divmod;
using cuda::DivMod;
using cuda::kThreads;

#define DDF_GRID_STRIDE_LOOP(idx, total)                                                                 \
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < (total);       \
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x)

// Output rows per tile of the channel-filter gradient's first level: about 512 products per partial sum.
inline int64_t channel_grad_tile_rows(const Geometry& geo) { return std::max<int64_t>(1, 512 / std::max<int64_t>(1, geo.ow)); }

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ feat, const scalar_t* __restrict__ chan,
                               const scalar_t* __restrict__ spat, scalar_t* __restrict__ out, const Geometry geo,
                               int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.oh * geo.ow;
  DDF_GRID_STRIDE_LOOP(idx, total) {
    const DivMod bc_pix = divmod(idx, plane), yx = divmod(bc_pix.rem, geo.ow);
    const int64_t y = yx.quot, x = yx.rem, bc = bc_pix.quot, b = divmod(bc, geo.c).quot;
    out[idx] = static_cast<scalar_t>(forward_element<scalar_t, acc_t>(
        feat + bc * geo.h * geo.w, chan + bc * geo.kk, spat + b * geo.kk * geo.oh * geo.ow, y, x, geo));
  }
}

template <typename scalar_t>
__global__ void feature_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ chan,
                                    const scalar_t* __restrict__ spat, scalar_t* __restrict__ grad_feat,
                                    const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t src_plane = geo.h * geo.w;
  DDF_GRID_STRIDE_LOOP(idx, total) {
    const DivMod bc_pix = divmod(idx, src_plane), yx = divmod(bc_pix.rem, geo.w);
    const int64_t py = yx.quot, px = yx.rem, bc = bc_pix.quot, b = divmod(bc, geo.c).quot;
    grad_feat[idx] = static_cast<scalar_t>(feature_grad_element<scalar_t, acc_t>(
        grad + bc * geo.oh * geo.ow, chan + bc * geo.kk, spat + b * geo.kk * geo.oh * geo.ow, py, px, geo));
  }
}

template <typename scalar_t>
__global__ void spatial_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ feat,
                                    const scalar_t* __restrict__ chan, scalar_t* __restrict__ grad_spat,
                                    const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.oh * geo.ow;
  DDF_GRID_STRIDE_LOOP(idx, total) {
    const DivMod rest_pix = divmod(idx, plane), b_t = divmod(rest_pix.quot, geo.kk), yx = divmod(rest_pix.rem, geo.ow);
    const int64_t y = yx.quot, x = yx.rem, t = b_t.rem, b = b_t.quot;
    grad_spat[idx] = static_cast<scalar_t>(spatial_grad_element<scalar_t, acc_t>(
        grad + b * geo.c * geo.oh * geo.ow, feat + b * geo.c * geo.h * geo.w, chan + b * geo.c * geo.kk, t, y, x,
        geo));
  }
}

// One work item per output pixel (b, y, x): K*K accumulators in registers over the channels.
template <typename scalar_t, int K>
__global__ void spatial_grad_pixel_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ feat,
                                          const scalar_t* __restrict__ chan, scalar_t* __restrict__ grad_spat,
                                          const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.oh * geo.ow;
  DDF_GRID_STRIDE_LOOP(idx, total) {
    const DivMod b_pix = divmod(idx, plane), yx = divmod(b_pix.rem, geo.ow);
    const int64_t b = b_pix.quot;
    acc_t acc[K * K];
    spatial_grad_pixel<K, scalar_t, acc_t>(grad + b * geo.c * plane, feat + b * geo.c * geo.h * geo.w,
                                           chan + b * geo.c * K * K, yx.quot, yx.rem, geo, acc);
    scalar_t* dst = grad_spat + b * K * K * plane + b_pix.rem;
    UPSAMPLE_PLUGIN_UNROLL
    for (int t = 0; t < K * K; ++t) dst[t * plane] = static_cast<scalar_t>(acc[t]);
  }
}

// Channel-filter gradient, level 1: partial[(b*C + c)*k*k + t][tile] = the sum over output rows
// [tile*tile_rows, (tile + 1)*tile_rows).
template <typename scalar_t>
__global__ void channel_grad_partial_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ feat,
                                            const scalar_t* __restrict__ spat,
                                            at::opmath_type<scalar_t>* __restrict__ partial, const Geometry geo,
                                            int64_t tiles, int64_t tile_rows, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  DDF_GRID_STRIDE_LOOP(idx, total) {
    const DivMod value_tile = divmod(idx, tiles), bc_t = divmod(value_tile.quot, geo.kk);
    const int64_t bc = bc_t.quot, b = divmod(bc, geo.c).quot, row0 = value_tile.rem * tile_rows;
    partial[idx] = channel_grad_rows<scalar_t, acc_t>(grad + bc * geo.oh * geo.ow, feat + bc * geo.h * geo.w,
                                                      spat + b * geo.kk * geo.oh * geo.ow, bc_t.rem, row0,
                                                      row0 + tile_rows, geo);
  }
}

// Level 2: grad_chan[(b*C + c)*k*k + t] = the tiles' partial sums, in tile order.
template <typename scalar_t>
__global__ void channel_grad_sum_kernel(const at::opmath_type<scalar_t>* __restrict__ partial,
                                        scalar_t* __restrict__ grad_chan, int64_t tiles, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  DDF_GRID_STRIDE_LOOP(idx, total) {
    const acc_t* p = partial + idx * tiles;
    acc_t acc = acc_t(0);
    for (int64_t i = 0; i < tiles; ++i) acc += p[i];
    grad_chan[idx] = static_cast<scalar_t>(acc);
  }
}

at::Tensor ddf_forward_cuda(const at::Tensor& features, const at::Tensor& channel_filter,
                            const at::Tensor& spatial_filter, int64_t kernel_size, int64_t dilation, int64_t stride,
                            c10::string_view combine) {
  const Geometry geo =
      ddf_check_forward(features, channel_filter, spatial_filter, kernel_size, dilation, stride, combine);
  check_device_type(features, "features", c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(features.device());
  const auto options = features.options().memory_format(at::MemoryFormat::Contiguous);
  if (geo.n * geo.c * geo.oh * geo.ow == 0) return at::zeros({geo.n, geo.c, geo.oh, geo.ow}, options);
  const at::Tensor f = features.contiguous(), cf = channel_filter.contiguous(), sf = spatial_filter.contiguous();
  at::Tensor out = at::empty({geo.n, geo.c, geo.oh, geo.ow}, options);
  const int64_t total = out.numel();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "ddf_forward_cuda", [&] {
    forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        f.const_data_ptr<scalar_t>(), cf.const_data_ptr<scalar_t>(), sf.const_data_ptr<scalar_t>(),
        out.mutable_data_ptr<scalar_t>(), geo, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ddf_backward_cuda(const at::Tensor& grad_output,
                                                                 const at::Tensor& features,
                                                                 const at::Tensor& channel_filter,
                                                                 const at::Tensor& spatial_filter,
                                                                 int64_t kernel_size, int64_t dilation,
                                                                 int64_t stride, c10::string_view combine) {
  const Geometry geo = ddf_check_backward(grad_output, features, channel_filter, spatial_filter, kernel_size,
                                          dilation, stride, combine);
  check_device_type(features, "features", c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(features.device());
  const auto options = features.options().memory_format(at::MemoryFormat::Contiguous);
  if (grad_output.numel() == 0) {
    return {at::zeros(features.sizes(), options), at::zeros(channel_filter.sizes(), options),
            at::zeros(spatial_filter.sizes(), options)};
  }
  const at::Tensor d = grad_output.contiguous(), f = features.contiguous(), cf = channel_filter.contiguous(),
                   sf = spatial_filter.contiguous();
  at::Tensor grad_features = at::empty(features.sizes(), options);
  at::Tensor grad_channel = at::empty(channel_filter.sizes(), options);
  at::Tensor grad_spatial = at::empty(spatial_filter.sizes(), options);
  const int64_t feat_total = grad_features.numel(), chan_total = grad_channel.numel(),
                spat_total = grad_spatial.numel();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "ddf_backward_cuda", [&] {
    const scalar_t* dp = d.const_data_ptr<scalar_t>();
    const scalar_t* fp = f.const_data_ptr<scalar_t>();
    const scalar_t* cp = cf.const_data_ptr<scalar_t>();
    const scalar_t* sp = sf.const_data_ptr<scalar_t>();
    using acc_t = at::opmath_type<scalar_t>;
    feature_grad_kernel<scalar_t><<<blocks_for(feat_total), kThreads, 0, stream>>>(
        dp, cp, sp, grad_features.mutable_data_ptr<scalar_t>(), geo, feat_total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t tile_rows = channel_grad_tile_rows(geo), tiles = (geo.oh + tile_rows - 1) / tile_rows;
    at::Tensor partial = at::empty({chan_total, tiles}, options.dtype(c10::CppTypeToScalarType<acc_t>::value));
    channel_grad_partial_kernel<scalar_t><<<blocks_for(chan_total * tiles), kThreads, 0, stream>>>(
        dp, fp, sp, partial.mutable_data_ptr<acc_t>(), geo, tiles, tile_rows, chan_total * tiles);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    channel_grad_sum_kernel<scalar_t><<<blocks_for(chan_total), kThreads, 0, stream>>>(
        partial.const_data_ptr<acc_t>(), grad_channel.mutable_data_ptr<scalar_t>(), tiles, chan_total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    cuda::dispatch_kernel_size(geo.k, [&](auto kernel_size_constant) {
      constexpr int K = decltype(kernel_size_constant)::value;
      if constexpr (K > 0) {
        const int64_t pixels = geo.n * geo.oh * geo.ow;
        spatial_grad_pixel_kernel<scalar_t, K><<<blocks_for(pixels), kThreads, 0, stream>>>(
            dp, fp, cp, grad_spatial.mutable_data_ptr<scalar_t>(), geo, pixels);
      } else {
        spatial_grad_kernel<scalar_t><<<blocks_for(spat_total), kThreads, 0, stream>>>(
            dp, fp, cp, grad_spatial.mutable_data_ptr<scalar_t>(), geo, spat_total);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {grad_features, grad_channel, grad_spatial};
}

}  // namespace

TORCH_LIBRARY_IMPL(upsample_plugin, CUDA, m) {
  m.impl("ddf_forward", &ddf_forward_cuda);
  m.impl("ddf_backward", &ddf_backward_cuda);
}

}  // namespace ddf
}  // namespace upsample_plugin
