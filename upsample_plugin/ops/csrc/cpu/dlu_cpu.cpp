// DLU fused reassembly, CPU kernels (spec/dlu.md steps 5-6; geometry and per-element math in
// include/dlu_common.h). The (N, k*k*G, s*H, s*W) kernel tensor K' is never materialised in the forward pass.
//
// Work unit: (n, g, y0) = batch element, channel group, low-res row, as in cpu/carafe_cpu.cpp. Its s output rows
// all have parent row y0; their sampled kernels are computed once into a (k*k, s, W*s) buffer (acc_t) and reused
// for every channel of the group, then the CARAFE row loops run on it (contiguous, vectorisable).
//
// Backward, all deterministic (fixed summation order, no atomics, independent of the thread count):
// * grad_features: CARAFE's gather (each low-res row accumulates the output rows that read it), with the kernels
//   of those rows sampled on the fly.
// * grad_offsets and grad_kernel_space go through dK' = dL/dK' (the CARAFE mask gradient), in chunks of low-res
//   rows of one (n, g). Pass 1 (parallel over the chunk's rows) computes dK' of the chunk's output pixels into a
//   chunk buffer and, from it, each pixel's offset gradient (a local quantity: the spatial derivative of the
//   bilinear sample times the clamp gradient). Pass 2 (parallel over the k*k taps; each tap owns its own
//   kernel-space plane) walks the chunk's pixels in order and adds dK' times the 4 bilinear weights to the
//   corners: a scatter confined to one thread, so no atomics and a fixed order. Memory: one chunk buffer of at
//   most kChunkElements acc_t values (dK' of a whole (n, g) when smaller: k*k*s*s*H*W), plus, for
//   float16/bfloat16, a float32 copy of grad_kernel_space.
#include <algorithm>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "cpu_rows.h"
#include "dlu_common.h"

namespace upsample_plugin {
namespace dlu {
namespace {

// dK' chunk budget (acc_t values): 1M = 4 MB in float32.
constexpr int64_t kChunkElements = int64_t{1} << 20;

using cpu::feature_grad_row;
using cpu::grain;
using cpu::load_row;
using cpu::load_upsampled_row;
using cpu::reassemble_rows;
using cpu::row_fma;
using cpu::store_row;

// kbuf[((a*k + b)*s + i)*OW + q] = K'[t = a*k + b](p0 + i, q) for a in [a0, a1), all b: the sampled kernels of
// output rows p0 .. p0 + s - 1 (parent row p0 / s).
template <typename scalar_t, typename acc_t>
inline void sample_rows(const scalar_t* ks, const scalar_t* off, int64_t g, int64_t p0, int64_t a0, int64_t a1,
                        acc_t* kbuf, const Geometry& geo) {
  const int64_t plane = geo.h * geo.w, ow = geo.ow, s = geo.s;
  for (int64_t i = 0; i < s; ++i) {
    for (int64_t q = 0; q < ow; ++q) {
      const Sample<acc_t> sp = sample_point<scalar_t, acc_t>(off, g, p0 + i, q, geo);
      for (int64_t t = a0 * geo.k; t < a1 * geo.k; ++t) {
        kbuf[(t * s + i) * ow + q] = sample_tap<scalar_t, acc_t>(ks + t * plane, sp);
      }
    }
  }
}

template <typename scalar_t>
void forward_kernel(const scalar_t* feat, const scalar_t* ks, const scalar_t* off, scalar_t* out, const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w, uw = (geo.w + 2 * r) * s;
  const int64_t units = geo.n * geo.groups * geo.h;
  at::parallel_for(0, units, grain(geo.cpg * geo.kk * s * ow), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> kbuf(geo.kk * s * ow);
    std::vector<acc_t> xbuf(k * uw, acc_t(0));
    std::vector<acc_t> obuf(ow);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t y0 = unit % geo.h, ng = unit / geo.h, n = ng / geo.groups, g = ng % geo.groups;
      const int64_t a0 = tap_begin(y0, r), a1 = tap_end(y0, r, k, geo.h);
      sample_rows<scalar_t, acc_t>(ks + ng * geo.kk * src_plane, off + n * geo.groups * 2 * geo.ss * src_plane, g,
                                   y0 * s, a0, a1, kbuf.data(), geo);
      for (int64_t cc = 0; cc < geo.cpg; ++cc) {
        const int64_t nc = ng * geo.cpg + cc;
        const scalar_t* fplane = feat + nc * src_plane;
        for (int64_t a = a0; a < a1; ++a) load_upsampled_row(fplane + (y0 + a - r) * geo.w, xbuf.data() + a * uw, geo.w, r, s);
        reassemble_rows(kbuf.data(), xbuf.data(), a0, a1, obuf.data(), out + nc * plane + y0 * s * ow, geo);
      }
    }
  });
}

template <typename scalar_t>
void feature_grad_kernel(const scalar_t* grad, const scalar_t* ks, const scalar_t* off, scalar_t* grad_feat,
                         const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w, uw = (geo.w + 2 * r) * s;
  const int64_t units = geo.n * geo.groups * geo.h;
  at::parallel_for(0, units, grain(geo.cpg * geo.kk * s * ow), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> kbuf(geo.kk * s * ow);  // [t][i][q]: kernels of output row (y0 - a + r)*s + i, tap row a
    std::vector<acc_t> tbuf(uw);
    std::vector<acc_t> dbuf(ow);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t y0 = unit % geo.h, ng = unit / geo.h, n = ng / geo.groups, g = ng % geo.groups;
      const int64_t a0 = gather_tap_begin(y0, r, geo.h), a1 = gather_tap_end(y0, r, k);
      const scalar_t* ks_ng = ks + ng * geo.kk * src_plane;
      const scalar_t* off_n = off + n * geo.groups * 2 * geo.ss * src_plane;
      for (int64_t a = a0; a < a1; ++a)  // tap row a of the rows whose parent is y0 - a + r
        sample_rows<scalar_t, acc_t>(ks_ng, off_n, g, (y0 - a + r) * s, a, a + 1, kbuf.data(), geo);
      for (int64_t cc = 0; cc < geo.cpg; ++cc) {
        const int64_t nc = ng * geo.cpg + cc;
        feature_grad_row(grad + nc * plane, kbuf.data(), y0, a0, a1, tbuf.data(), dbuf.data(),
                         grad_feat + nc * src_plane + y0 * geo.w, geo);
      }
    }
  });
}

// grad_offsets (written) and grad_kernel_space (gks, acc_t, accumulated into; zero on entry).
template <typename scalar_t>
void kernel_space_offset_grad_kernel(const scalar_t* grad, const scalar_t* feat, const scalar_t* ks,
                                     const scalar_t* off, at::opmath_type<scalar_t>* gks, scalar_t* grad_off,
                                     const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow, kk = geo.kk;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w, uw = (geo.w + 2 * r) * s;
  const int64_t row_elems = kk * s * ow;  // dK' of one low-res row's s output rows
  const int64_t chunk_rows = std::min<int64_t>(geo.h, std::max<int64_t>(1, kChunkElements / row_elems));
  std::vector<acc_t> dkp(chunk_rows * row_elems);  // [row][t][i][q]
  for (int64_t ng = 0; ng < geo.n * geo.groups; ++ng) {
    const int64_t n = ng / geo.groups, g = ng % geo.groups;
    const scalar_t* ks_ng = ks + ng * kk * src_plane;
    const scalar_t* off_n = off + n * geo.groups * 2 * geo.ss * src_plane;
    scalar_t* goff_n = grad_off + n * geo.groups * 2 * geo.ss * src_plane;
    acc_t* gks_ng = gks + ng * kk * src_plane;
    for (int64_t row0 = 0; row0 < geo.h; row0 += chunk_rows) {
      const int64_t rows = std::min(chunk_rows, geo.h - row0);
      // Pass 1: dK' of the chunk (CARAFE's mask gradient, channel order) and the offset gradients.
      at::parallel_for(0, rows, grain(geo.cpg * row_elems), [&](int64_t begin, int64_t end) {
        std::vector<acc_t> xbuf(k * uw, acc_t(0));
        std::vector<acc_t> dbuf(s * ow);
        for (int64_t rr = begin; rr < end; ++rr) {
          const int64_t y0 = row0 + rr;
          acc_t* macc = dkp.data() + rr * row_elems;
          const int64_t a0 = tap_begin(y0, r), a1 = tap_end(y0, r, k, geo.h);
          std::fill(macc, macc + row_elems, acc_t(0));
          for (int64_t cc = 0; cc < geo.cpg; ++cc) {
            const int64_t nc = ng * geo.cpg + cc;
            const scalar_t* fplane = feat + nc * src_plane;
            for (int64_t a = a0; a < a1; ++a) load_upsampled_row(fplane + (y0 + a - r) * geo.w, xbuf.data() + a * uw, geo.w, r, s);
            load_row(grad + nc * plane + y0 * s * ow, dbuf.data(), s * ow);
            for (int64_t a = a0; a < a1; ++a)
              for (int64_t b = 0; b < k; ++b)
                for (int64_t i = 0; i < s; ++i)
                  row_fma(macc + ((a * k + b) * s + i) * ow, dbuf.data() + i * ow, xbuf.data() + a * uw + b * s, ow);
          }
          for (int64_t i = 0; i < s; ++i) {
            for (int64_t q = 0; q < ow; ++q) {
              const Sample<acc_t> sp = sample_point<scalar_t, acc_t>(off_n, g, y0 * s + i, q, geo);
              acc_t dx = acc_t(0), dy = acc_t(0);
              for (int64_t t = 0; t < kk; ++t)
                sample_tap_position_grad<scalar_t, acc_t>(ks_ng + t * src_plane, sp, macc[(t * s + i) * ow + q], &dx,
                                                          &dy);
              const int64_t sub = i * s + q % s, pix = y0 * geo.w + q / s;
              goff_n[((g * 2) * geo.ss + sub) * src_plane + pix] = static_cast<scalar_t>(dx * sp.gx);
              goff_n[((g * 2 + 1) * geo.ss + sub) * src_plane + pix] = static_cast<scalar_t>(dy * sp.gy);
            }
          }
        }
      });
      // Pass 2: each tap's plane of grad_kernel_space gathers the chunk's pixels in row-major order.
      at::parallel_for(0, kk, 1, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          acc_t* dst = gks_ng + t * src_plane;
          for (int64_t rr = 0; rr < rows; ++rr) {
            const int64_t y0 = row0 + rr;
            const acc_t* src = dkp.data() + rr * row_elems + t * s * ow;
            for (int64_t i = 0; i < s; ++i) {
              for (int64_t q = 0; q < ow; ++q) {
                const acc_t d = src[i * ow + q];
                if (d == acc_t(0)) continue;  // taps reading padding (and exact zeros) add nothing
                const Sample<acc_t> sp = sample_point<scalar_t, acc_t>(off_n, g, y0 * s + i, q, geo);
                const acc_t ex = acc_t(1) - sp.wx, ey = acc_t(1) - sp.wy;
                dst[sp.i00] += d * (ey * ex);
                dst[sp.i01] += d * (ey * sp.wx);
                dst[sp.i10] += d * (sp.wy * ex);
                dst[sp.i11] += d * (sp.wy * sp.wx);
              }
            }
          }
        }
      });
    }
  }
}

at::Tensor dlu_forward_cpu(const at::Tensor& features, const at::Tensor& kernel_space, const at::Tensor& offsets,
                           int64_t kernel_size, int64_t group_size, int64_t scale_factor) {
  const Geometry geo = dlu_check_forward(features, kernel_space, offsets, kernel_size, group_size, scale_factor);
  check_device_type(features, "features", c10::DeviceType::CPU);
  const auto options = features.options().memory_format(at::MemoryFormat::Contiguous);
  if (features.numel() == 0) return at::zeros({geo.n, geo.c, geo.oh, geo.ow}, options);
  const at::Tensor f = features.contiguous(), ks = kernel_space.contiguous(), off = offsets.contiguous();
  at::Tensor out = at::empty({geo.n, geo.c, geo.oh, geo.ow}, options);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "dlu_forward_cpu", [&] {
    forward_kernel<scalar_t>(f.const_data_ptr<scalar_t>(), ks.const_data_ptr<scalar_t>(),
                             off.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), geo);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dlu_backward_cpu(const at::Tensor& grad_output,
                                                                const at::Tensor& features,
                                                                const at::Tensor& kernel_space,
                                                                const at::Tensor& offsets, int64_t kernel_size,
                                                                int64_t group_size, int64_t scale_factor) {
  const Geometry geo =
      dlu_check_backward(grad_output, features, kernel_space, offsets, kernel_size, group_size, scale_factor);
  check_device_type(features, "features", c10::DeviceType::CPU);
  const auto options = features.options().memory_format(at::MemoryFormat::Contiguous);
  if (grad_output.numel() == 0) {  // no output pixel or no channel: every gradient is 0
    return {at::zeros(features.sizes(), options), at::zeros(kernel_space.sizes(), options),
            at::zeros(offsets.sizes(), options)};
  }
  const at::Tensor d = grad_output.contiguous(), f = features.contiguous(), ks = kernel_space.contiguous(),
                   off = offsets.contiguous();
  at::Tensor grad_features = at::empty(features.sizes(), options);
  at::Tensor grad_offsets = at::empty(offsets.sizes(), options);
  at::Tensor grad_kernel_space;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "dlu_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor gks = at::zeros(kernel_space.sizes(), options.dtype(c10::CppTypeToScalarType<acc_t>::value));
    feature_grad_kernel<scalar_t>(d.const_data_ptr<scalar_t>(), ks.const_data_ptr<scalar_t>(),
                                  off.const_data_ptr<scalar_t>(), grad_features.mutable_data_ptr<scalar_t>(), geo);
    kernel_space_offset_grad_kernel<scalar_t>(d.const_data_ptr<scalar_t>(), f.const_data_ptr<scalar_t>(),
                                              ks.const_data_ptr<scalar_t>(), off.const_data_ptr<scalar_t>(),
                                              gks.mutable_data_ptr<acc_t>(), grad_offsets.mutable_data_ptr<scalar_t>(),
                                              geo);
    grad_kernel_space = gks.to(f.scalar_type());
  });
  return {grad_features, grad_kernel_space, grad_offsets};
}

}  // namespace

TORCH_LIBRARY_IMPL(upsample_plugin, CPU, m) {
  m.impl("dlu_forward", &dlu_forward_cpu);
  m.impl("dlu_backward", &dlu_backward_cpu);
}

}  // namespace dlu
}  // namespace upsample_plugin
