// DLU fused reassembly, CUDA kernels (spec/dlu.md steps 5-6): one thread per output value, grid-stride loops,
// the per-element functions of include/dlu_common.h (shared with the CPU kernels' definitions).
//
// Forward: one thread per output value; its kernel taps are sampled from the kernel space on the fly (K' is
// never materialised). Backward, deterministic (no floating-point atomics):
// * grad_features: one thread per value, a gather over the output pixels that read it (kernels re-sampled).
// * dK' (N, G, k*k, s*H, s*W), accumulation type: one thread per value (the CARAFE mask gradient). This is the
//   one full-size temporary of the backward pass.
// * grad_offsets: one thread per output pixel and group, from dK' and the kernel-space slopes.
// * grad_kernel_space: a gather. Each pixel's cell (the top-left corner of its bilinear sample) is computed, the
//   pixels of each (n, g) are stably sorted by cell (at::sort, deterministic) and bucket starts found with
//   at::searchsorted; one thread per kernel-space value then sums the pixels of the <= 4 cells that touch it, in
//   sorted order. Extra memory: 3 int64 values per output pixel and group, plus N*G*H*W + 1 bucket starts.
#include <algorithm>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "dlu_common.h"
#include "cuda_launch.h"

namespace upsample_plugin {
namespace dlu {
namespace {

using cuda::blocks_for;
using cuda::kThreads;

#define DLU_GRID_STRIDE_LOOP(idx, total)                                                                 \
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < (total);       \
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x)

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ feat, const scalar_t* __restrict__ ks,
                               const scalar_t* __restrict__ off, scalar_t* __restrict__ out, const Geometry geo,
                               int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.h * geo.w;
  DLU_GRID_STRIDE_LOOP(idx, total) {
    const int64_t q = idx % geo.ow, p = (idx / geo.ow) % geo.oh, nc = idx / (geo.ow * geo.oh);
    const int64_t ng = nc / geo.cpg, n = ng / geo.groups, g = ng % geo.groups;
    out[idx] = static_cast<scalar_t>(forward_element<scalar_t, acc_t>(
        feat + nc * plane, ks + ng * geo.kk * plane, off + n * geo.groups * 2 * geo.ss * plane, g, p, q, geo));
  }
}

template <typename scalar_t>
__global__ void feature_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ ks,
                                    const scalar_t* __restrict__ off, scalar_t* __restrict__ grad_feat,
                                    const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.h * geo.w;
  DLU_GRID_STRIDE_LOOP(idx, total) {
    const int64_t x = idx % geo.w, y = (idx / geo.w) % geo.h, nc = idx / plane;
    const int64_t ng = nc / geo.cpg, n = ng / geo.groups, g = ng % geo.groups;
    grad_feat[idx] = static_cast<scalar_t>(feature_grad_element<scalar_t, acc_t>(
        grad + nc * geo.oh * geo.ow, ks + ng * geo.kk * plane, off + n * geo.groups * 2 * geo.ss * plane, g, y, x,
        geo));
  }
}

// dkp[n, g, t, p, q] = dK' (accumulation type).
template <typename scalar_t>
__global__ void kernel_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ feat,
                                   at::opmath_type<scalar_t>* __restrict__ dkp, const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  DLU_GRID_STRIDE_LOOP(idx, total) {
    const int64_t q = idx % geo.ow, p = (idx / geo.ow) % geo.oh;
    const int64_t t = (idx / (geo.ow * geo.oh)) % geo.kk, ng = idx / (geo.ow * geo.oh * geo.kk);
    const int64_t first = ng * geo.cpg;
    dkp[idx] = kernel_grad_element<scalar_t, acc_t>(grad + first * geo.oh * geo.ow, feat + first * geo.h * geo.w,
                                                    t / geo.k, t % geo.k, p, q, geo);
  }
}

// One thread per (n, g, p, q): both offset gradients of the pixel, and the pixel's cell key for the sort.
template <typename scalar_t>
__global__ void offset_grad_kernel(const at::opmath_type<scalar_t>* __restrict__ dkp,
                                   const scalar_t* __restrict__ ks, const scalar_t* __restrict__ off,
                                   scalar_t* __restrict__ grad_off, int64_t* __restrict__ cell, const Geometry geo,
                                   int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.h * geo.w, oplane = geo.oh * geo.ow;
  DLU_GRID_STRIDE_LOOP(idx, total) {
    const int64_t q = idx % geo.ow, p = (idx / geo.ow) % geo.oh, ng = idx / oplane;
    const int64_t n = ng / geo.groups, g = ng % geo.groups;
    const scalar_t* off_n = off + n * geo.groups * 2 * geo.ss * plane;
    acc_t gx, gy;
    offset_grad_element<scalar_t, acc_t, acc_t>(dkp + ng * geo.kk * oplane, ks + ng * geo.kk * plane, off_n, g, p,
                                                q, geo, &gx, &gy);
    const int64_t sub = (p % geo.s) * geo.s + q % geo.s, pix = (p / geo.s) * geo.w + q / geo.s;
    scalar_t* goff_n = grad_off + n * geo.groups * 2 * geo.ss * plane;
    goff_n[((g * 2) * geo.ss + sub) * plane + pix] = static_cast<scalar_t>(gx);
    goff_n[((g * 2 + 1) * geo.ss + sub) * plane + pix] = static_cast<scalar_t>(gy);
    const Sample<acc_t> sp = sample_point<scalar_t, acc_t>(off_n, g, p, q, geo);
    cell[idx] = ng * plane + sp.i00;  // sort key: (n, g) first, then the cell
  }
}

// One thread per kernel-space value. order: pixel indices (ng*OH*OW + p*OW + q) sorted by cell key; start:
// N*G*H*W + 1 bucket starts (the buckets of one (n, g) are contiguous).
template <typename scalar_t>
__global__ void kernel_space_grad_kernel(const at::opmath_type<scalar_t>* __restrict__ dkp,
                                         const scalar_t* __restrict__ off, const int64_t* __restrict__ order,
                                         const int64_t* __restrict__ start, scalar_t* __restrict__ grad_ks,
                                         const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.h * geo.w, oplane = geo.oh * geo.ow;
  DLU_GRID_STRIDE_LOOP(idx, total) {
    const int64_t X = idx % geo.w, Y = (idx / geo.w) % geo.h;
    const int64_t t = (idx / plane) % geo.kk, ng = idx / (plane * geo.kk);
    const int64_t n = ng / geo.groups, g = ng % geo.groups;
    grad_ks[idx] = static_cast<scalar_t>(kernel_space_grad_element<scalar_t, acc_t, acc_t>(
        dkp + ng * geo.kk * oplane, off + n * geo.groups * 2 * geo.ss * plane, order, start + ng * plane,
        ng * oplane, g, t, Y, X, geo));
  }
}

at::Tensor dlu_forward_cuda(const at::Tensor& features, const at::Tensor& kernel_space, const at::Tensor& offsets,
                            int64_t kernel_size, int64_t group_size, int64_t scale_factor) {
  const Geometry geo = dlu_check_forward(features, kernel_space, offsets, kernel_size, group_size, scale_factor);
  check_device_type(features, "features", c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(features.device());
  const auto options = features.options().memory_format(at::MemoryFormat::Contiguous);
  if (features.numel() == 0) return at::zeros({geo.n, geo.c, geo.oh, geo.ow}, options);
  const at::Tensor f = features.contiguous(), ks = kernel_space.contiguous(), off = offsets.contiguous();
  at::Tensor out = at::empty({geo.n, geo.c, geo.oh, geo.ow}, options);
  const int64_t total = out.numel();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "dlu_forward_cuda", [&] {
    forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        f.const_data_ptr<scalar_t>(), ks.const_data_ptr<scalar_t>(), off.const_data_ptr<scalar_t>(),
        out.mutable_data_ptr<scalar_t>(), geo, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dlu_backward_cuda(const at::Tensor& grad_output,
                                                                 const at::Tensor& features,
                                                                 const at::Tensor& kernel_space,
                                                                 const at::Tensor& offsets, int64_t kernel_size,
                                                                 int64_t group_size, int64_t scale_factor) {
  const Geometry geo =
      dlu_check_backward(grad_output, features, kernel_space, offsets, kernel_size, group_size, scale_factor);
  check_device_type(features, "features", c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(features.device());
  const auto options = features.options().memory_format(at::MemoryFormat::Contiguous);
  if (grad_output.numel() == 0) {
    return {at::zeros(features.sizes(), options), at::zeros(kernel_space.sizes(), options),
            at::zeros(offsets.sizes(), options)};
  }
  const at::Tensor d = grad_output.contiguous(), f = features.contiguous(), ks = kernel_space.contiguous(),
                   off = offsets.contiguous();
  at::Tensor grad_features = at::empty(features.sizes(), options);
  at::Tensor grad_kernel_space = at::empty(kernel_space.sizes(), options);
  at::Tensor grad_offsets = at::empty(offsets.sizes(), options);
  const int64_t pixels = geo.n * geo.groups * geo.oh * geo.ow;
  at::Tensor cell = at::empty({pixels}, options.dtype(at::kLong));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "dlu_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int64_t feat_total = grad_features.numel();
    feature_grad_kernel<scalar_t><<<blocks_for(feat_total), kThreads, 0, stream>>>(
        d.const_data_ptr<scalar_t>(), ks.const_data_ptr<scalar_t>(), off.const_data_ptr<scalar_t>(),
        grad_features.mutable_data_ptr<scalar_t>(), geo, feat_total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor dkp = at::empty({geo.n * geo.groups * geo.kk, geo.oh, geo.ow},
                               options.dtype(c10::CppTypeToScalarType<acc_t>::value));
    const int64_t dk_total = dkp.numel();
    kernel_grad_kernel<scalar_t><<<blocks_for(dk_total), kThreads, 0, stream>>>(
        d.const_data_ptr<scalar_t>(), f.const_data_ptr<scalar_t>(), dkp.mutable_data_ptr<acc_t>(), geo, dk_total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    offset_grad_kernel<scalar_t><<<blocks_for(pixels), kThreads, 0, stream>>>(
        dkp.const_data_ptr<acc_t>(), ks.const_data_ptr<scalar_t>(), off.const_data_ptr<scalar_t>(),
        grad_offsets.mutable_data_ptr<scalar_t>(), cell.mutable_data_ptr<int64_t>(), geo, pixels);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    // Stable sort by cell key (ties keep pixel order), then bucket starts of every (n, g, cell) key.
    auto sorted = at::sort(cell, /*stable=*/true, /*dim=*/0, /*descending=*/false);
    const at::Tensor& keys = std::get<0>(sorted);
    const at::Tensor& order = std::get<1>(sorted);
    const at::Tensor bounds = at::arange(geo.n * geo.groups * geo.h * geo.w + 1, options.dtype(at::kLong));
    const at::Tensor start = at::searchsorted(keys, bounds).contiguous();
    const int64_t ks_total = grad_kernel_space.numel();
    kernel_space_grad_kernel<scalar_t><<<blocks_for(ks_total), kThreads, 0, stream>>>(
        dkp.const_data_ptr<acc_t>(), off.const_data_ptr<scalar_t>(), order.const_data_ptr<int64_t>(),
        start.const_data_ptr<int64_t>(), grad_kernel_space.mutable_data_ptr<scalar_t>(), geo, ks_total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_features, grad_kernel_space, grad_offsets};
}

}  // namespace

TORCH_LIBRARY_IMPL(upsample_plugin, CUDA, m) {
  m.impl("dlu_forward", &dlu_forward_cuda);
  m.impl("dlu_backward", &dlu_backward_cuda);
}

}  // namespace dlu
}  // namespace upsample_plugin
