// DLU fused reassembly, CUDA kernels (spec/dlu.md steps 5-6): grid-stride loops over work items, the per-element
// functions of include/dlu_common.h (shared with the CPU kernels) and CARAFE's per-pixel and gather functions
// (include/carafe_common.h). Deterministic: no floating-point atomics, every value has one writer.
//
// Forward, k in {3, 5} (cuda::dispatch_kernel_size): one work item per (n, g, chunk of kChannelChunk channels,
// output pixel) samples the pixel's k*k kernel from the kernel space once (registers) and reassembles the chunk's
// channels; K' is never materialised. Other k: one thread per output value, its taps sampled on the fly.
// Backward:
// * K' (N, G, k*k, s*H, s*W), accumulation type: sampled once per pixel (sample_kernels_kernel); grad_features is
//   then CARAFE's gather over K' (one thread per value) instead of re-sampling ~s*s*k*k kernels per value.
// * dK' (the CARAFE mask gradient) reuses K''s buffer once grad_features is done: the one full-size temporary
//   of the backward pass. grad_offsets (from dK' and the kernel-space slopes) and each pixel's cell key (the
//   top-left corner of its bilinear sample): for k in {3, 5} in the same per-pixel work item as dK', from its k*k
//   register accumulators; otherwise one thread per dK' value, then one per output pixel and group.
// * grad_kernel_space: a gather. The pixels of each (n, g) are stably sorted by cell key (at::sort,
//   deterministic) and bucket starts found with at::searchsorted; one thread per kernel-space value sums the
//   pixels of the <= 4 cells that touch it, in sorted order, with each pixel's cell taken from its bucket (the
//   key), never recomputed. Extra memory: 3 int64 values per output pixel and group, N*G*H*W + 1 bucket starts.
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
using cuda::divmod;
using cuda::DivMod;
using cuda::kChannelChunk;
using cuda::kThreads;

#define DLU_GRID_STRIDE_LOOP(idx, total)                                                                 \
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < (total);       \
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x)

// One thread per output value (kernel sizes without a per-pixel kernel): its taps sampled on the fly.
template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ feat, const scalar_t* __restrict__ ks,
                               const scalar_t* __restrict__ off, scalar_t* __restrict__ out, const Geometry geo,
                               int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.h * geo.w, oplane = geo.oh * geo.ow;
  DLU_GRID_STRIDE_LOOP(idx, total) {
    const DivMod nc_pix = divmod(idx, oplane), pq = divmod(nc_pix.rem, geo.ow);
    const int64_t nc = nc_pix.quot, ng = divmod(nc, geo.cpg).quot;
    const DivMod n_g = divmod(ng, geo.groups);
    out[idx] = static_cast<scalar_t>(forward_element<scalar_t, acc_t>(
        feat + nc * plane, ks + ng * geo.kk * plane, off + n_g.quot * geo.groups * 2 * geo.ss * plane, n_g.rem,
        pq.quot, pq.rem, geo));
  }
}

// One work item per (n, g, channel chunk, output pixel): the pixel's K*K kernel is sampled once into registers,
// then CARAFE's per-pixel reassembly walks the chunk's channels.
template <typename scalar_t, int K>
__global__ void forward_pixel_kernel(const scalar_t* __restrict__ feat, const scalar_t* __restrict__ ks,
                                     const scalar_t* __restrict__ off, scalar_t* __restrict__ out, const Geometry geo,
                                     int64_t chunks, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.h * geo.w, oplane = geo.oh * geo.ow;
  DLU_GRID_STRIDE_LOOP(idx, total) {
    const DivMod rest_pix = divmod(idx, oplane), ng_chunk = divmod(rest_pix.quot, chunks);
    const DivMod pq = divmod(rest_pix.rem, geo.ow), n_g = divmod(ng_chunk.quot, geo.groups);
    const int64_t ng = ng_chunk.quot, c0 = ng_chunk.rem * kChannelChunk;
    const int64_t channels = geo.cpg - c0 < kChannelChunk ? geo.cpg - c0 : kChannelChunk;  // no std::min: device code
    const Sample<acc_t> sp = sample_point<scalar_t, acc_t>(off + n_g.quot * geo.groups * 2 * geo.ss * plane, n_g.rem,
                                                           pq.quot, pq.rem, geo);
    const scalar_t* ks_ng = ks + ng * K * K * plane;
    acc_t taps[K * K];
    UPSAMPLE_PLUGIN_UNROLL
    for (int t = 0; t < K * K; ++t) taps[t] = sample_tap<scalar_t, acc_t>(ks_ng + t * plane, sp);
    const int64_t nc0 = ng * geo.cpg + c0;
    carafe::reassemble_pixel<K, scalar_t, acc_t>(taps, feat + nc0 * plane, out + nc0 * oplane, channels, pq.quot,
                                                 pq.rem, geo);
  }
}

// kp[n, g, t, p, q] = K' (accumulation type): one thread per (n, g, output pixel) samples its k*k taps once.
template <typename scalar_t>
__global__ void sample_kernels_kernel(const scalar_t* __restrict__ ks, const scalar_t* __restrict__ off,
                                      at::opmath_type<scalar_t>* __restrict__ kp, const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.h * geo.w, oplane = geo.oh * geo.ow;
  DLU_GRID_STRIDE_LOOP(idx, total) {
    const DivMod ng_pix = divmod(idx, oplane), pq = divmod(ng_pix.rem, geo.ow), n_g = divmod(ng_pix.quot, geo.groups);
    const Sample<acc_t> sp = sample_point<scalar_t, acc_t>(off + n_g.quot * geo.groups * 2 * geo.ss * plane, n_g.rem,
                                                           pq.quot, pq.rem, geo);
    const scalar_t* ks_ng = ks + ng_pix.quot * geo.kk * plane;
    acc_t* dst = kp + ng_pix.quot * geo.kk * oplane + ng_pix.rem;
    for (int64_t t = 0; t < geo.kk; ++t) dst[t * oplane] = sample_tap<scalar_t, acc_t>(ks_ng + t * plane, sp);
  }
}

// grad_features: CARAFE's gather (carafe::feature_grad_element) over the sampled kernels kp, one thread per
// value; the same sum as feature_grad_element of dlu_common.h, without re-sampling each kernel per value.
template <typename scalar_t>
__global__ void feature_grad_kernel(const scalar_t* __restrict__ grad, const at::opmath_type<scalar_t>* __restrict__ kp,
                                    scalar_t* __restrict__ grad_feat, const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.h * geo.w, oplane = geo.oh * geo.ow;
  DLU_GRID_STRIDE_LOOP(idx, total) {
    const DivMod nc_pix = divmod(idx, plane), yx = divmod(nc_pix.rem, geo.w);
    const int64_t nc = nc_pix.quot, ng = divmod(nc, geo.cpg).quot;
    grad_feat[idx] = static_cast<scalar_t>(carafe::feature_grad_element<scalar_t, acc_t, Geometry, acc_t>(
        grad + nc * oplane, kp + ng * geo.kk * oplane, yx.quot, yx.rem, geo));
  }
}

// dkp[n, g, t, p, q] = dK' (accumulation type), one thread per value (kernel sizes without a per-pixel kernel).
template <typename scalar_t>
__global__ void kernel_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ feat,
                                   at::opmath_type<scalar_t>* __restrict__ dkp, const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t oplane = geo.oh * geo.ow;
  DLU_GRID_STRIDE_LOOP(idx, total) {
    const DivMod rest_pix = divmod(idx, oplane), ng_t = divmod(rest_pix.quot, geo.kk);
    const DivMod pq = divmod(rest_pix.rem, geo.ow), ab = divmod(ng_t.rem, geo.k);
    const int64_t first = ng_t.quot * geo.cpg;
    dkp[idx] = kernel_grad_element<scalar_t, acc_t>(grad + first * oplane, feat + first * geo.h * geo.w, ab.quot,
                                                    ab.rem, pq.quot, pq.rem, geo);
  }
}

// The pixel's offset gradients (from its dK' values dk[t * stride], KK as in offset_grad_of_sample, and its sample
// point) into grad_off, and its cell key (the top-left corner of the sample, (n, g) first) for the kernel-space gather's sort.
template <typename scalar_t, typename acc_t, typename dk_t, int KK>
__device__ __forceinline__ void write_offset_grad(const dk_t* dk, int64_t stride, const scalar_t* ks_ng,
                                                  const scalar_t* off_n, scalar_t* goff_n, int64_t* cell_key,
                                                  int64_t ng, int64_t g, int64_t p, int64_t q, const Geometry& geo) {
  const int64_t plane = geo.h * geo.w;
  const Sample<acc_t> sp = sample_point<scalar_t, acc_t>(off_n, g, p, q, geo);
  acc_t gx, gy;
  offset_grad_of_sample<scalar_t, acc_t, dk_t, KK>(dk, stride, ks_ng, sp, geo, &gx, &gy);
  const DivMod ph = divmod(p, geo.s), qw = divmod(q, geo.s);
  const int64_t sub = ph.rem * geo.s + qw.rem, pix = ph.quot * geo.w + qw.quot;
  goff_n[((g * 2) * geo.ss + sub) * plane + pix] = static_cast<scalar_t>(gx);
  goff_n[((g * 2 + 1) * geo.ss + sub) * plane + pix] = static_cast<scalar_t>(gy);
  *cell_key = ng * plane + sp.i00;
}

// One work item per (n, g, output pixel), K in {3, 5}: dK' with K*K register accumulators (CARAFE's per-pixel mask
// gradient), stored for the kernel-space gather, and from the same registers the pixel's offset gradients and cell
// key (offset_grad_kernel's work, without reading dK' back).
template <typename scalar_t, int K>
__global__ void kernel_offset_grad_pixel_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ feat,
                                                const scalar_t* __restrict__ ks, const scalar_t* __restrict__ off,
                                                at::opmath_type<scalar_t>* __restrict__ dkp,
                                                scalar_t* __restrict__ grad_off, int64_t* __restrict__ cell,
                                                const Geometry geo, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.h * geo.w, oplane = geo.oh * geo.ow, offn = geo.groups * 2 * geo.ss * plane;
  DLU_GRID_STRIDE_LOOP(idx, total) {
    const DivMod ng_pix = divmod(idx, oplane), pq = divmod(ng_pix.rem, geo.ow), n_g = divmod(ng_pix.quot, geo.groups);
    const int64_t first = ng_pix.quot * geo.cpg;
    acc_t acc[K * K];
    carafe::mask_grad_pixel<K, scalar_t, acc_t>(grad + first * oplane, feat + first * plane, pq.quot, pq.rem, geo,
                                                acc);
    acc_t* dst = dkp + ng_pix.quot * K * K * oplane + ng_pix.rem;
    UPSAMPLE_PLUGIN_UNROLL
    for (int t = 0; t < K * K; ++t) dst[t * oplane] = acc[t];
    write_offset_grad<scalar_t, acc_t, acc_t, K * K>(acc, 1, ks + ng_pix.quot * K * K * plane, off + n_g.quot * offn,
                                              grad_off + n_g.quot * offn, cell + idx, ng_pix.quot, n_g.rem, pq.quot,
                                              pq.rem, geo);
  }
}

// One thread per (n, g, p, q), kernel sizes without a per-pixel kernel: both offset gradients of the pixel from
// dK', and the pixel's cell key for the sort.
template <typename scalar_t>
__global__ void offset_grad_kernel(const at::opmath_type<scalar_t>* __restrict__ dkp,
                                   const scalar_t* __restrict__ ks, const scalar_t* __restrict__ off,
                                   scalar_t* __restrict__ grad_off, int64_t* __restrict__ cell, const Geometry geo,
                                   int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = geo.h * geo.w, oplane = geo.oh * geo.ow, offn = geo.groups * 2 * geo.ss * plane;
  DLU_GRID_STRIDE_LOOP(idx, total) {
    const DivMod ng_pix = divmod(idx, oplane), pq = divmod(ng_pix.rem, geo.ow), n_g = divmod(ng_pix.quot, geo.groups);
    write_offset_grad<scalar_t, acc_t, acc_t, 0>(dkp + ng_pix.quot * geo.kk * oplane + ng_pix.rem, oplane,
                                              ks + ng_pix.quot * geo.kk * plane, off + n_g.quot * offn,
                                              grad_off + n_g.quot * offn, cell + idx, ng_pix.quot, n_g.rem, pq.quot,
                                              pq.rem, geo);
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
    const DivMod rest_pix = divmod(idx, plane), ng_t = divmod(rest_pix.quot, geo.kk);
    const DivMod yx = divmod(rest_pix.rem, geo.w), n_g = divmod(ng_t.quot, geo.groups);
    const int64_t X = yx.rem, Y = yx.quot, t = ng_t.rem, ng = ng_t.quot, n = n_g.quot, g = n_g.rem;
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
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "dlu_forward_cuda", [&] {
    cuda::dispatch_kernel_size(geo.k, [&](auto kernel_size_constant) {
      constexpr int K = decltype(kernel_size_constant)::value;
      if constexpr (K > 0) {
        const int64_t chunks = (geo.cpg + kChannelChunk - 1) / kChannelChunk;
        const int64_t total = geo.n * geo.groups * chunks * geo.oh * geo.ow;
        forward_pixel_kernel<scalar_t, K><<<blocks_for(total), kThreads, 0, stream>>>(
            f.const_data_ptr<scalar_t>(), ks.const_data_ptr<scalar_t>(), off.const_data_ptr<scalar_t>(),
            out.mutable_data_ptr<scalar_t>(), geo, chunks, total);
      } else {
        const int64_t total = out.numel();
        forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
            f.const_data_ptr<scalar_t>(), ks.const_data_ptr<scalar_t>(), off.const_data_ptr<scalar_t>(),
            out.mutable_data_ptr<scalar_t>(), geo, total);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
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
    // K', then (same buffer, after the gather that reads it, in stream order) dK'.
    at::Tensor kp = at::empty({geo.n * geo.groups * geo.kk, geo.oh, geo.ow},
                              options.dtype(c10::CppTypeToScalarType<acc_t>::value));
    sample_kernels_kernel<scalar_t><<<blocks_for(pixels), kThreads, 0, stream>>>(
        ks.const_data_ptr<scalar_t>(), off.const_data_ptr<scalar_t>(), kp.mutable_data_ptr<acc_t>(), geo, pixels);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t feat_total = grad_features.numel();
    feature_grad_kernel<scalar_t><<<blocks_for(feat_total), kThreads, 0, stream>>>(
        d.const_data_ptr<scalar_t>(), kp.const_data_ptr<acc_t>(), grad_features.mutable_data_ptr<scalar_t>(), geo,
        feat_total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor dkp = kp;
    cuda::dispatch_kernel_size(geo.k, [&](auto kernel_size_constant) {
      constexpr int K = decltype(kernel_size_constant)::value;
      if constexpr (K > 0) {
        kernel_offset_grad_pixel_kernel<scalar_t, K><<<blocks_for(pixels), kThreads, 0, stream>>>(
            d.const_data_ptr<scalar_t>(), f.const_data_ptr<scalar_t>(), ks.const_data_ptr<scalar_t>(),
            off.const_data_ptr<scalar_t>(), dkp.mutable_data_ptr<acc_t>(), grad_offsets.mutable_data_ptr<scalar_t>(),
            cell.mutable_data_ptr<int64_t>(), geo, pixels);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      } else {
        const int64_t dk_total = dkp.numel();
        kernel_grad_kernel<scalar_t><<<blocks_for(dk_total), kThreads, 0, stream>>>(
            d.const_data_ptr<scalar_t>(), f.const_data_ptr<scalar_t>(), dkp.mutable_data_ptr<acc_t>(), geo,
            dk_total);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        offset_grad_kernel<scalar_t><<<blocks_for(pixels), kThreads, 0, stream>>>(
            dkp.const_data_ptr<acc_t>(), ks.const_data_ptr<scalar_t>(), off.const_data_ptr<scalar_t>(),
            grad_offsets.mutable_data_ptr<scalar_t>(), cell.mutable_data_ptr<int64_t>(), geo, pixels);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
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
