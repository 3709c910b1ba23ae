// DDF CUDA kernels (spec/ddf.md, "Custom op"): one thread per output value, grid-stride loops, the per-element
// functions of include/ddf_common.h. Forward: one thread per output pixel and channel. Backward: one thread per
// feature-gradient value (a gather over the output pixels that read it), one per spatial-filter-gradient value
// (a channel sum) and one per channel-filter-gradient value (a sum over the output positions), so no atomics and
// bitwise reproducible results. float16/bfloat16 accumulate in float32.
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
using cuda::kThreads;

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ feat, const scalar_t* __restrict__ chan,
                               const scalar_t* __restrict__ spat, scalar_t* __restrict__ out, const Geometry geo,
                               int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t x = idx % geo.ow, y = (idx / geo.ow) % geo.oh, bc = idx / (geo.ow * geo.oh);
    const int64_t b = bc / geo.c;
    out[idx] = static_cast<scalar_t>(forward_element<scalar_t, acc_t>(
        feat + bc * geo.h * geo.w, chan + bc * geo.kk, spat + b * geo.kk * geo.oh * geo.ow, y, x, geo));
  }
}

template <typename scalar_t>
__global__ void feature_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ chan,
                                    const scalar_t* __restrict__ spat, scalar_t* __restrict__ grad_feat,
                                    const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t px = idx % geo.w, py = (idx / geo.w) % geo.h, bc = idx / (geo.w * geo.h);
    const int64_t b = bc / geo.c;
    grad_feat[idx] = static_cast<scalar_t>(feature_grad_element<scalar_t, acc_t>(
        grad + bc * geo.oh * geo.ow, chan + bc * geo.kk, spat + b * geo.kk * geo.oh * geo.ow, py, px, geo));
  }
}

template <typename scalar_t>
__global__ void spatial_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ feat,
                                    const scalar_t* __restrict__ chan, scalar_t* __restrict__ grad_spat,
                                    const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t x = idx % geo.ow, y = (idx / geo.ow) % geo.oh;
    const int64_t t = (idx / (geo.ow * geo.oh)) % geo.kk, b = idx / (geo.ow * geo.oh * geo.kk);
    grad_spat[idx] = static_cast<scalar_t>(spatial_grad_element<scalar_t, acc_t>(
        grad + b * geo.c * geo.oh * geo.ow, feat + b * geo.c * geo.h * geo.w, chan + b * geo.c * geo.kk, t, y, x,
        geo));
  }
}

template <typename scalar_t>
__global__ void channel_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ feat,
                                    const scalar_t* __restrict__ spat, scalar_t* __restrict__ grad_chan,
                                    const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t t = idx % geo.kk, bc = idx / geo.kk, b = bc / geo.c;
    grad_chan[idx] = static_cast<scalar_t>(channel_grad_element<scalar_t, acc_t>(
        grad + bc * geo.oh * geo.ow, feat + bc * geo.h * geo.w, spat + b * geo.kk * geo.oh * geo.ow, t, geo));
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
    feature_grad_kernel<scalar_t><<<blocks_for(feat_total), kThreads, 0, stream>>>(
        dp, cp, sp, grad_features.mutable_data_ptr<scalar_t>(), geo, feat_total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    channel_grad_kernel<scalar_t><<<blocks_for(chan_total), kThreads, 0, stream>>>(
        dp, fp, sp, grad_channel.mutable_data_ptr<scalar_t>(), geo, chan_total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    spatial_grad_kernel<scalar_t><<<blocks_for(spat_total), kThreads, 0, stream>>>(
        dp, fp, cp, grad_spatial.mutable_data_ptr<scalar_t>(), geo, spat_total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
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
