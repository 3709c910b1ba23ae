// CARAFE CUDA kernels (spec/carafe.md): one thread per output value, grid-stride loops, the per-element
// functions of include/carafe_common.h. Forward: one thread per output pixel and channel. Backward: one thread
// per feature-gradient value (a gather over the output pixels that read it) and one per mask-gradient value
// (a channel sum), so no atomics and bitwise reproducible results.
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
using cuda::kThreads;

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ feat, const scalar_t* __restrict__ mask,
                               scalar_t* __restrict__ out, const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t q = idx % geo.ow, p = (idx / geo.ow) % geo.oh, nc = idx / (geo.ow * geo.oh);
    const int64_t ng = nc / geo.cpg;  // n*G + g(c), since C = G * C/G
    out[idx] = static_cast<scalar_t>(forward_element<scalar_t, acc_t>(
        feat + nc * geo.h * geo.w, mask + ng * geo.kk * geo.oh * geo.ow, p, q, geo));
  }
}

template <typename scalar_t>
__global__ void feature_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ mask,
                                    scalar_t* __restrict__ grad_feat, const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t x = idx % geo.w, y = (idx / geo.w) % geo.h, nc = idx / (geo.w * geo.h);
    const int64_t ng = nc / geo.cpg;
    grad_feat[idx] = static_cast<scalar_t>(feature_grad_element<scalar_t, acc_t>(
        grad + nc * geo.oh * geo.ow, mask + ng * geo.kk * geo.oh * geo.ow, y, x, geo));
  }
}

template <typename scalar_t>
__global__ void mask_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ feat,
                                 scalar_t* __restrict__ grad_mask, const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t q = idx % geo.ow, p = (idx / geo.ow) % geo.oh;
    const int64_t t = (idx / (geo.ow * geo.oh)) % geo.kk, ng = idx / (geo.ow * geo.oh * geo.kk);
    const int64_t first = ng * geo.cpg;  // n*C + g*C/G: the group's first channel
    grad_mask[idx] = static_cast<scalar_t>(mask_grad_element<scalar_t, acc_t>(
        grad + first * geo.oh * geo.ow, feat + first * geo.h * geo.w, t / geo.k, t % geo.k, p, q, geo));
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
  const int64_t total = out.numel();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "carafe_forward_cuda", [&] {
    forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        f.const_data_ptr<scalar_t>(), m.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), geo, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
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
  const int64_t feat_total = grad_features.numel(), mask_total = grad_masks.numel();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "carafe_backward_cuda", [&] {
    feature_grad_kernel<scalar_t><<<blocks_for(feat_total), kThreads, 0, stream>>>(
        d.const_data_ptr<scalar_t>(), m.const_data_ptr<scalar_t>(), grad_features.mutable_data_ptr<scalar_t>(), geo,
        feat_total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    mask_grad_kernel<scalar_t><<<blocks_for(mask_total), kThreads, 0, stream>>>(
        d.const_data_ptr<scalar_t>(), f.const_data_ptr<scalar_t>(), grad_masks.mutable_data_ptr<scalar_t>(), geo,
        mask_total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
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
