// CARAFE CUDA kernels (spec/carafe.md): grid-stride loops over work items, the per-element and per-pixel functions
// of include/carafe_common.h. No atomics: every output value has exactly one writer, so results are bitwise
// reproducible whatever the grid and the thread order.
//
// * Forward, k in {3, 5} (cuda::dispatch_kernel_size): one work item per (n, g, chunk of kChannelChunk
//   channels, output pixel). The item reads the pixel's k*k masks once into registers and reassembles its
//   channels, so masks are read C/(G*kChannelChunk) times per pixel instead of C/G times. Other k: one thread per
//   output value (forward_element).
// * Feature gradient: one thread per value, a gather over the s*s*k*k output pixels that read it.
// * Mask gradient, k in {3, 5}: one work item per (n, g, output pixel) with k*k accumulators in registers,
//   walking the group's channels: each grad_output value is read once per pixel instead of k*k times. Other k:
//   one thread per mask-gradient value (mask_grad_element, the same channel-order sum).
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

#include "carafe_common.h"
#include "cuda_launch.h"

namespace upsample_plugin {
namespace carafe {
namespace {

using cuda::blocks_for;
using cuda::divmod;
using cuda::DivMod;
using cuda::kChannelChunk;
using cuda::kThreads;

#define CARAFE_GRID_STRIDE_LOOP(idx, total)                                                              \
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < (total);       \
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x)

// One thread per output value (kernel sizes without a per-pixel kernel).
template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ feat, const scalar_t* __restrict__ mask,
                               scalar_t* __restrict__ out, const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.oh * geo.ow;
  CARAFE_GRID_STRIDE_LOOP(idx, total) {
    const DivMod nc_pix = divmod(idx, plane), pq = divmod(nc_pix.rem, geo.ow);
    const int64_t nc = nc_pix.quot, ng = divmod(nc, geo.cpg).quot;  // n*G + g(c), since C = G * C/G
    out[idx] = static_cast<scalar_t>(forward_element<scalar_t, acc_t>(
        feat + nc * geo.h * geo.w, mask + ng * geo.kk * plane, pq.quot, pq.rem, geo));
  }
}

// One work item per (n, g, channel chunk, output pixel): the pixel's K*K masks in registers.
template <typename scalar_t, int K>
__global__ void forward_pixel_kernel(const scalar_t* __restrict__ feat, const scalar_t* __restrict__ mask,
                                     scalar_t* __restrict__ out, const Geometry geo, int64_t chunks, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.oh * geo.ow;
  CARAFE_GRID_STRIDE_LOOP(idx, total) {
    const DivMod rest_pix = divmod(idx, plane), ng_chunk = divmod(rest_pix.quot, chunks);
    const DivMod pq = divmod(rest_pix.rem, geo.ow);
    const int64_t ng = ng_chunk.quot, c0 = ng_chunk.rem * kChannelChunk;
    const int64_t channels = geo.cpg - c0 < kChannelChunk ? geo.cpg - c0 : kChannelChunk;  // no std::min: device code
    const scalar_t* m = mask + ng * K * K * plane + rest_pix.rem;
    acc_t taps[K * K];
    UPSAMPLE_PLUGIN_UNROLL
    for (int t = 0; t < K * K; ++t) taps[t] = static_cast<acc_t>(m[t * plane]);
    const int64_t nc0 = ng * geo.cpg + c0;
    reassemble_pixel<K, scalar_t, acc_t>(taps, feat + nc0 * geo.h * geo.w, out + nc0 * plane, channels, pq.quot,
                                         pq.rem, geo);
  }
}

template <typename scalar_t>
__global__ void feature_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ mask,
                                    scalar_t* __restrict__ grad_feat, const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t src_plane = geo.h * geo.w;
  CARAFE_GRID_STRIDE_LOOP(idx, total) {
    const DivMod nc_pix = divmod(idx, src_plane), yx = divmod(nc_pix.rem, geo.w);
    const int64_t nc = nc_pix.quot, ng = divmod(nc, geo.cpg).quot;
    grad_feat[idx] = static_cast<scalar_t>(feature_grad_element<scalar_t, acc_t>(
        grad + nc * geo.oh * geo.ow, mask + ng * geo.kk * geo.oh * geo.ow, yx.quot, yx.rem, geo));
  }
}

// One thread per mask-gradient value (kernel sizes without a per-pixel kernel).
template <typename scalar_t>
__global__ void mask_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ feat,
                                 scalar_t* __restrict__ grad_mask, const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.oh * geo.ow;
  CARAFE_GRID_STRIDE_LOOP(idx, total) {
    const DivMod rest_pix = divmod(idx, plane), ng_t = divmod(rest_pix.quot, geo.kk);
    const DivMod pq = divmod(rest_pix.rem, geo.ow), ab = divmod(ng_t.rem, geo.k);
    const int64_t first = ng_t.quot * geo.cpg;  // n*C + g*C/G: the group's first channel
    grad_mask[idx] = static_cast<scalar_t>(mask_grad_element<scalar_t, acc_t>(
        grad + first * plane, feat + first * geo.h * geo.w, ab.quot, ab.rem, pq.quot, pq.rem, geo));
  }
}

// One work item per (n, g, output pixel): K*K accumulators in registers over the group's channels.
template <typename scalar_t, int K>
__global__ void mask_grad_pixel_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ feat,
                                       scalar_t* __restrict__ grad_mask, const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.oh * geo.ow;
  CARAFE_GRID_STRIDE_LOOP(idx, total) {
    const DivMod ng_pix = divmod(idx, plane), pq = divmod(ng_pix.rem, geo.ow);
    const int64_t first = ng_pix.quot * geo.cpg;
    acc_t acc[K * K];
    mask_grad_pixel<K, scalar_t, acc_t>(grad + first * plane, feat + first * geo.h * geo.w, pq.quot, pq.rem, geo,
                                        acc);
    scalar_t* dst = grad_mask + ng_pix.quot * K * K * plane + ng_pix.rem;
    UPSAMPLE_PLUGIN_UNROLL
    for (int t = 0; t < K * K; ++t) dst[t * plane] = static_cast<scalar_t>(acc[t]);
  }
}

at::Tensor carafe_forward_cuda(const at::Tensor& features, const at::Tensor& masks, int64_t kernel_size,
                               int64_t group_size, int64_t scale_factor) {
  const Geometry geo = carafe_check_forward(features, masks, kernel_size, group_size, scale_factor);
  check_device_type(features, "features", c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(features.device());
  const auto options = features.options().memory_format(at::MemoryFormat::Contiguous);
  if (features.numel() == 0 || masks.numel() == 0) return at::zeros({geo.n, geo.c, geo.oh, geo.ow}, options);
  const at::Tensor f = features.contiguous(), m = masks.contiguous();
  at::Tensor out = at::empty({geo.n, geo.c, geo.oh, geo.ow}, options);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "carafe_forward_cuda", [&] {
    cuda::dispatch_kernel_size(geo.k, [&](auto kernel_size_constant) {
      constexpr int K = decltype(kernel_size_constant)::value;
      if constexpr (K > 0) {
        const int64_t chunks = (geo.cpg + kChannelChunk - 1) / kChannelChunk;
        const int64_t total = geo.n * geo.groups * chunks * geo.oh * geo.ow;
        forward_pixel_kernel<scalar_t, K><<<blocks_for(total), kThreads, 0, stream>>>(
            f.const_data_ptr<scalar_t>(), m.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), geo,
            chunks, total);
      } else {
        const int64_t total = out.numel();
        forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
            f.const_data_ptr<scalar_t>(), m.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), geo,
            total);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> carafe_backward_cuda(const at::Tensor& grad_output, const at::Tensor& features,
                                                        const at::Tensor& masks, int64_t kernel_size,
                                                        int64_t group_size, int64_t scale_factor) {
  const Geometry geo = carafe_check_backward(grad_output, features, masks, kernel_size, group_size, scale_factor);
  check_device_type(features, "features", c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(features.device());
  const auto options = features.options().memory_format(at::MemoryFormat::Contiguous);
  if (grad_output.numel() == 0) return {at::zeros(features.sizes(), options), at::zeros(masks.sizes(), options)};
  const at::Tensor d = grad_output.contiguous(), f = features.contiguous(), m = masks.contiguous();
  at::Tensor grad_features = at::empty(features.sizes(), options);
  at::Tensor grad_masks = at::empty(masks.sizes(), options);
  const int64_t feat_total = grad_features.numel();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "carafe_backward_cuda", [&] {
    feature_grad_kernel<scalar_t><<<blocks_for(feat_total), kThreads, 0, stream>>>(
        d.const_data_ptr<scalar_t>(), m.const_data_ptr<scalar_t>(), grad_features.mutable_data_ptr<scalar_t>(), geo,
        feat_total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    cuda::dispatch_kernel_size(geo.k, [&](auto kernel_size_constant) {
      constexpr int K = decltype(kernel_size_constant)::value;
      if constexpr (K > 0) {
        const int64_t total = geo.n * geo.groups * geo.oh * geo.ow;
        mask_grad_pixel_kernel<scalar_t, K><<<blocks_for(total), kThreads, 0, stream>>>(
            d.const_data_ptr<scalar_t>(), f.const_data_ptr<scalar_t>(), grad_masks.mutable_data_ptr<scalar_t>(), geo,
            total);
      } else {
        const int64_t total = grad_masks.numel();
        mask_grad_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
            d.const_data_ptr<scalar_t>(), f.const_data_ptr<scalar_t>(), grad_masks.mutable_data_ptr<scalar_t>(), geo,
            total);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {grad_features, grad_masks};
}

}  // namespace

TORCH_LIBRARY_IMPL(upsample_plugin, CUDA, m) {
  m.impl("carafe_forward", &carafe_forward_cuda);
  m.impl("carafe_backward", &carafe_backward_cuda);
}

}  // namespace carafe
}  // namespace upsample_plugin
