// DLU fused reassembly, CPU kernels (spec/dlu.md steps 5-6; geometry and per-element math in
// include/dlu_common.h). The (N, k*k*G, s*H, s*W) kernel tensor K' is never materialised.
//
// DLU is CARAFE with kernels sampled from the kernel space: the kernels run CARAFE's vector-register hot loops
// (include/cpu_reassembly_loops.h) on kernels they sample per work unit (include/cpu_dlu_loops.h), compiled per
// instruction set and chosen at run time (include/cpu_isa.h). Work unit: (n, g, y0) = batch element, channel
// group, low-res row, as in cpu/carafe_cpu.cpp; its s output rows all have parent row y0.
// * Forward: the unit's sample points (one per output pixel) and the sampled kernels of its s output rows
//   ([t][i][q], acc_t) are computed once and reused for every channel of the group (reassemble_rows, which
//   takes kRowsPerCall units per call).
// * grad_features: CARAFE's gather (feature_grad_unit): each low-res row accumulates the output rows that read
//   it, with the kernels of those rows sampled into kpad (sample points kept in a per-thread ring of k rows).
// * grad_offsets and grad_kernel_space go through dK' = dL/dK' (the CARAFE mask gradient, kernel_grad_rows),
//   in chunks of low-res rows of one (n, g). Pass 1 (parallel over the chunk's rows) computes dK' of the chunk's
//   output pixels into a chunk buffer, their sample points into a second one, and, from them, each pixel's
//   offset gradient (a local quantity: the spatial derivative of the bilinear sample times the clamp
//   gradient). Pass 2 (parallel over the k*k taps; each tap owns its own kernel-space plane) walks the chunk's
//   pixels in order and adds dK' times the 4 bilinear weights to the corners: a scatter confined to one thread.
// Every sum has a fixed order (the previous row kernels' order, per element), no atomics: the results are
// bitwise reproducible, independent of the thread count and identical for every instruction set. Memory: the
// chunk buffers (dK' and one PixelSample per pixel of the chunk: at most kChunkElements acc_t values together,
// a whole (n, g) when smaller, or one low-res row), per-thread scratch of a few rows, and, for float16/bfloat16, a
// float32 copy of grad_kernel_space.
#include <algorithm>
#include <type_traits>
#include <memory>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "cpu_isa.h"
#include "cpu_memory.h"
#include "cpu_rows.h"
#include "dlu_common.h"

namespace upsample_plugin {
namespace dlu {
namespace {

// The sample point of one output pixel (sample_point's Sample, compact): corners i00, i00 + dx, i00 + dy,
// i00 + dy + dx (dx: 1, or 0 on the last column; dy: W, or 0 on the last row), weights wx, wy of the x1
// column / y1 row, clamp gradients gx, gy.
template <typename acc_t>
struct PixelSample {
  int64_t i00;
  int32_t dx, dy;
  acc_t wx, wy, gx, gy;
};

#define UPSAMPLE_PLUGIN_ISA_KERNELS "cpu_dlu_loops.h"
#include "cpu_isa_instantiate.h"

using cpu::grain;
using isa_base::kChannelBlock;
using isa_base::kRowsPerCall;
using isa_base::kStagedChannels;
using isa_base::staged_rows;

// The instruction set of the DLU loops: the active one (cpu_isa.h), except on a CPU with AVX2 but without FMA
// (the AVX2 and AVX-512 builds of cpu_dlu_loops.h use FMA instructions), which runs the baseline build.
// All builds give the same bits.
cpu::Isa dlu_isa() {
  static const bool has_fma = [] {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("fma") != 0;
#else
    return false;
#endif
  }();
  const cpu::Isa isa = cpu::active_isa();
  return has_fma ? isa : cpu::Isa::base;
}

// UPSAMPLE_PLUGIN_CALL_ISA with dlu_isa().
#define DLU_CALL_ISA(FN, ...)                                                       \
  do {                                                                              \
    switch (dlu_isa()) {                                                            \
      case ::upsample_plugin::cpu::Isa::avx512: isa_avx512::FN(__VA_ARGS__); break; \
      case ::upsample_plugin::cpu::Isa::avx2: isa_avx2::FN(__VA_ARGS__); break;     \
      default: isa_base::FN(__VA_ARGS__); break;                                    \
    }                                                                               \
  } while (0)

// Chunk budget (acc_t values) of dK' and the sample points: 1M = 4 MB in float32.
constexpr int64_t kChunkElements = int64_t{1} << 20;

template <typename scalar_t>
void forward_kernel(const scalar_t* feat, const scalar_t* ks, const scalar_t* off, scalar_t* out, const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w, uw = (geo.w + 2 * r) * s;
  const int64_t unit_kernels = geo.kk * s * ow;
  at::parallel_for(0, cpu::row_chunks(geo, kRowsPerCall), grain(kRowsPerCall * geo.cpg * unit_kernels),
                   [&](int64_t begin, int64_t end) {
    std::vector<acc_t> kbufs(kRowsPerCall * unit_kernels);  // [unit][t][i][q]: kernels of the units' output rows
    std::vector<acc_t> ktiles(kRowsPerCall * unit_kernels);
    std::vector<acc_t> xbuf(kStagedChannels * staged_rows(kRowsPerCall, k) * uw, acc_t(0));  // zero borders
    std::vector<PixelSample<acc_t>> samp(ow);
    for (int64_t index = begin; index < end; ++index) {
      const cpu::RowChunk chunk = cpu::row_chunk(index, geo, kRowsPerCall);
      const int64_t n = chunk.ng / geo.groups, g = chunk.ng % geo.groups;
      for (int64_t u = 0; u < chunk.units; ++u) {
        const int64_t y0 = chunk.y_first + u, a0 = tap_begin(y0, r), a1 = tap_end(y0, r, k, geo.h);
        DLU_CALL_ISA(sample_forward_kernels, ks + chunk.ng * geo.kk * src_plane,
                     off + n * geo.groups * 2 * geo.ss * src_plane, g, y0, a0, a1, kbufs.data() + u * unit_kernels,
                     samp.data(), geo);
      }
      UPSAMPLE_PLUGIN_CALL_ISA(reassemble_rows, static_cast<const acc_t*>(kbufs.data()),
                               feat + chunk.ng * geo.cpg * src_plane,
                               out + chunk.ng * geo.cpg * plane + chunk.y_first * s * ow, geo.cpg, chunk.y_first,
                               chunk.units, xbuf.data(), ktiles.data(), geo);
    }
  });
}

template <typename scalar_t>
void feature_grad_kernel(const scalar_t* grad, const scalar_t* ks, const scalar_t* off, scalar_t* grad_feat,
                         const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w, pw = ow + 2 * r * s;
  const int64_t units = geo.n * geo.groups * geo.h;
  at::parallel_for(0, units, grain(geo.cpg * geo.kk * s * ow), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> kpad(geo.kk * s * pw, acc_t(0));             // [t][i][u], zero borders
    std::vector<acc_t> dpad(kChannelBlock * k * s * pw, acc_t(0));  // [cb][a][i][u], zero borders
    std::vector<acc_t> tbuf(kChannelBlock * ow);
    std::vector<PixelSample<acc_t>> ring(k * s * ow);  // sample points of k parent rows' output rows
    std::vector<int64_t> ring_tag(k, -1);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t y0 = unit % geo.h, ng = unit / geo.h, n = ng / geo.groups, g = ng % geo.groups;
      const int64_t a0 = gather_tap_begin(y0, r, geo.h), a1 = gather_tap_end(y0, r, k);
      DLU_CALL_ISA(sample_feature_grad_kernels, ks + ng * geo.kk * src_plane,
                   off + n * geo.groups * 2 * geo.ss * src_plane, g, ng, y0, a0, a1, kpad.data(), ring.data(),
                   ring_tag.data(), geo);
      UPSAMPLE_PLUGIN_CALL_ISA(feature_grad_unit, grad + ng * geo.cpg * plane, kpad.data(), geo.cpg, y0, a0, a1,
                               dpad.data(), tbuf.data(), grad_feat + ng * geo.cpg * src_plane + y0 * geo.w, geo);
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
  // A chunk row's buffers in acc_t values: dK' and s*OW sample points.
  const int64_t row_cost = row_elems + s * ow * static_cast<int64_t>(sizeof(PixelSample<acc_t>) / sizeof(acc_t));
  const int64_t chunk_rows = std::min<int64_t>(geo.h, std::max<int64_t>(1, kChunkElements / row_cost));
  // Uninitialised (pass 1 writes every value pass 2 reads): no serial zero-fill of a few MB per call.
  const std::unique_ptr<acc_t[]> dkp(new acc_t[chunk_rows * row_elems]);                       // [row][t][i][q]
  const std::unique_ptr<PixelSample<acc_t>[]> samp(new PixelSample<acc_t>[chunk_rows * s * ow]);  // [row][i][q]
  for (int64_t ng = 0; ng < geo.n * geo.groups; ++ng) {
    const int64_t n = ng / geo.groups, g = ng % geo.groups;
    const scalar_t* ks_ng = ks + ng * kk * src_plane;
    const scalar_t* off_n = off + n * geo.groups * 2 * geo.ss * src_plane;
    scalar_t* goff_n = grad_off + n * geo.groups * 2 * geo.ss * src_plane;
    acc_t* gks_ng = gks + ng * kk * src_plane;
    for (int64_t row0 = 0; row0 < geo.h; row0 += chunk_rows) {
      const int64_t rows = std::min(chunk_rows, geo.h - row0);
      // Pass 1: dK' of the chunk (CARAFE's mask gradient, channel order), sample points, offset gradients.
      const int64_t chunk_calls = (rows + kRowsPerCall - 1) / kRowsPerCall;
      at::parallel_for(0, chunk_calls, grain(kRowsPerCall * geo.cpg * row_elems), [&](int64_t begin, int64_t end) {
        std::vector<acc_t> xbuf(kStagedChannels * staged_rows(kRowsPerCall, k) * uw, acc_t(0));  // zero borders
        for (int64_t call = begin; call < end; ++call) {
          const int64_t rr_first = call * kRowsPerCall, units = std::min(kRowsPerCall, rows - rr_first);
          const int64_t y_first = row0 + rr_first;
          UPSAMPLE_PLUGIN_CALL_ISA(kernel_grad_rows, grad + ng * geo.cpg * plane + y_first * s * ow,
                                   feat + ng * geo.cpg * src_plane, geo.cpg, y_first, units,
                                   dkp.get() + rr_first * row_elems, xbuf.data(), geo);
          for (int64_t rr = rr_first; rr < rr_first + units; ++rr)
            DLU_CALL_ISA(offset_grad_rows, static_cast<const acc_t*>(dkp.get() + rr * row_elems), ks_ng, off_n, g,
                         row0 + rr, samp.get() + rr * s * ow, goff_n, geo);
        }
      });
      // Pass 2: each tap's plane of grad_kernel_space gathers the chunk's pixels in row-major order.
      at::parallel_for(0, kk, 1, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          acc_t* dst = gks_ng + t * src_plane;
          for (int64_t rr = 0; rr < rows; ++rr) {
            const acc_t* src = dkp.get() + rr * row_elems + t * s * ow;
            const PixelSample<acc_t>* sp = samp.get() + rr * s * ow;
            for (int64_t q = 0; q < s * ow; ++q) {  // q = i*OW + column: the rows' pixels in row-major order
              const acc_t d = src[q];
              if (d == acc_t(0)) continue;  // taps reading padding (and exact zeros) add nothing
              const PixelSample<acc_t> pt = sp[q];
              const acc_t ex = acc_t(1) - pt.wx, ey = acc_t(1) - pt.wy;
              acc_t* c = dst + pt.i00;
              c[0] += d * (ey * ex);
              c[pt.dx] += d * (ey * pt.wx);
              c[pt.dy] += d * (pt.wy * ex);
              c[pt.dy + pt.dx] += d * (pt.wy * pt.wx);
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
  at::Tensor out = cpu::empty_output({geo.n, geo.c, geo.oh, geo.ow}, options);
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
  at::Tensor grad_features = cpu::empty_output(features.sizes(), options);
  at::Tensor grad_offsets = cpu::empty_output(offsets.sizes(), options);
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
