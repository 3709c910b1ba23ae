// DDF CPU kernels (spec/ddf.md, "Custom op"; geometry and per-element definition in include/ddf_common.h).
//
// They compute the per-element sums of ddf_common.h in the same order and with the same roundings as those
// definitions (each product rounded, then added, in tap order, taps outside the map skipped), so results are
// bitwise those of the previous row kernels, on every instruction set (include/cpu_isa.h) and for any thread
// count. The hot loops are in include/cpu_ddf_loops.h, compiled per instruction set and chosen at run time; this
// file sizes the work units, allocates their scratch once per parallel chunk and stages the spatial filter:
// * forward, unit (b, tile of up to 8 output rows): the tile's spatial-filter rows are staged once for all
//   channels; per block of channels, the tile's rows in order (its input rows then come from the cache).
// * feature gradient, unit (b, tile of input rows): each input row is read by at most one output row per tap row
//   iy; the spatial filters of the output rows reading the tile are staged, and the gradient is a gather (every
//   value written by one unit, no atomics).
// * spatial-filter gradient, unit (b, tile of output rows): k*k accumulator rows per output row, summed over the
//   channels in channel order.
// * channel-filter gradient, unit (b, group of channels): one sequential sum per (b, c, t) over rows then
//   columns; the vector lanes are channels (channel-transposed staging), the k*k taps independent chains.
// Tile and group sizes follow the thread count; no sum depends on them.
#include <algorithm>
#include <string_view>
#include <type_traits>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "cpu_isa.h"
#include "cpu_memory.h"
#include "cpu_rows.h"
#include "ddf_common.h"

namespace upsample_plugin {
namespace ddf {
namespace {

// Column tap ix of an output column x: input column x*s + off = (x + q)*s + p (0 <= p < s), inside the map for
// x in [x0, x1); o = p*plen + q: its offset in a row staged as phases (stride 1: off).
struct ColTap {
  int64_t off, q, p, o, x0, x1;
};
// Feature gradient: column tap ix adds to input columns px = j*s + p of its phase p, from output column j + sh,
// inside the map for j + sh in [x0, x1); so = ix*OW + sh: its offset in a tap row of staged spatial filters,
// co = ix*kDdfBlock: in a tap row of staged channel filters.
struct GatherTap {
  int64_t ix, sh, x0, x1, so, co;
};
// Phase p of an input row: its nj columns j*s + p, the taps gather[begin, end) (in ix order), and the columns
// [jl, jr) where every one of them is inside the map.
struct GatherPhase {
  int64_t p, begin, end, nj, jl, jr;
};
// Tap tables of one call (views of PlanStorage). Output columns [xl, xr): every column tap inside the map;
// plen: length of a staged input-row phase, ceil(W / s).
struct Plan {
  const ColTap* col;
  const GatherTap* gather;
  const GatherPhase* phase;
  int64_t xl, xr, plen;
};

#define UPSAMPLE_PLUGIN_ISA_KERNELS "cpu_ddf_loops.h"
#include "cpu_isa_instantiate.h"

using cpu::load_row;
using isa_base::kDdfBlock;
using MulTag = std::integral_constant<bool, true>;
using AddTag = std::integral_constant<bool, false>;

// f(MulTag()) for the 'mul' combination, f(AddTag()) for 'add': the loops are compiled for each.
template <typename F>
inline void with_combination(const Geometry& geo, F&& f) {
  if (geo.mul) {
    f(MulTag());
  } else {
    f(AddTag());
  }
}

// sbuf[(y - y_begin)*k*k*OW + t*OW + x] = tap t of the spatial filter of batch element b at output row y, for
// y in [y_begin, y_end), in the accumulation type.
template <typename scalar_t, typename acc_t>
void stage_spatial_rows(const scalar_t* spat, int64_t b, int64_t y_begin, int64_t y_end, acc_t* sbuf,
                        const Geometry& geo) {
  const int64_t kk = geo.kk, ow = geo.ow, plane = geo.oh * ow;
  for (int64_t y = y_begin; y < y_end; ++y)
    for (int64_t t = 0; t < kk; ++t)
      load_row(spat + (b * kk + t) * plane + y * ow, sbuf + ((y - y_begin) * kk + t) * ow, ow);
}

struct PlanStorage {
  std::vector<ColTap> col;
  std::vector<GatherTap> gather;
  std::vector<GatherPhase> phase;
  Plan plan;

  explicit PlanStorage(const Geometry& geo) {
    const int64_t k = geo.k, s = geo.s, ow = geo.ow, plen = (geo.w + s - 1) / s;
    int64_t xl = 0, xr = ow;
    for (int64_t ix = 0; ix < k; ++ix) {
      const int64_t off = (ix - geo.r) * geo.d;
      const int64_t q = off >= 0 ? off / s : -((-off + s - 1) / s);  // floor(off / s)
      const int64_t p = off - q * s;
      ColTap ct{off, q, p, p * plen + q, out_begin(off, s), out_end(off, s, geo.w, ow)};
      col.push_back(ct);
      xl = std::max(xl, ct.x0);
      xr = std::min(xr, ct.x1);
    }
    xl = std::min(xl, ow);
    xr = std::max(xr, xl);
    for (int64_t p = 0; p < s; ++p) {
      GatherPhase ph{p, static_cast<int64_t>(gather.size()), 0, (geo.w - p + s - 1) / s, 0, 0};
      int64_t jl = 0, jr = ph.nj;
      for (int64_t ix = 0; ix < k; ++ix) {
        const ColTap& ct = col[ix];
        if (((p - ct.off) % s + s) % s != 0) continue;
        const int64_t sh = (p - ct.off) / s;
        gather.push_back(GatherTap{ix, sh, ct.x0, ct.x1, ix * ow + sh, ix * kDdfBlock});
        jl = std::max(jl, ct.x0 - sh);
        jr = std::min(jr, ct.x1 - sh);
      }
      ph.end = static_cast<int64_t>(gather.size());
      ph.jl = std::min(jl, ph.nj);
      ph.jr = std::max(jr, ph.jl);
      phase.push_back(ph);
    }
    plan = Plan{col.data(), gather.data(), phase.data(), xl, xr, plen};
  }
};

// Rows per work unit of the row kernels (a tile of output or input rows): up to 8, fewer when there would be
// under 4 units per thread. Results do not depend on it (every sum keeps its order).
inline int64_t tile_rows(int64_t rows, int64_t n) {
  const int64_t want = n * rows / (4 * static_cast<int64_t>(at::get_num_threads()));
  return std::max<int64_t>(1, std::min<int64_t>(8, want));
}

template <typename scalar_t>
void forward_kernel(const scalar_t* feat, const scalar_t* chan, const scalar_t* spat, scalar_t* out,
                    const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, ow = geo.ow, kk = geo.kk;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w;
  const PlanStorage ps(geo);
  const Plan& plan = ps.plan;
  const int64_t tile = tile_rows(geo.oh, geo.n), tiles = (geo.oh + tile - 1) / tile;
  const int64_t in_rows = std::min(geo.h, (tile - 1) * s + 2 * geo.r * geo.d + 1);
  at::parallel_for(0, geo.n * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> sbuf(tile * kk * ow);                           // [y][t][x]: spatial filter of the tile
    std::vector<acc_t> xbuf(kDdfBlock * in_rows * s * plan.plen);      // [cb][row][phase][j]: input rows
    std::vector<acc_t> cbuf(kDdfBlock * kk);                           // [cb][t]: channel filters
    std::vector<const acc_t*> xrow(kDdfBlock * k);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t b = unit / tiles, y0 = unit % tiles * tile, y1 = std::min(y0 + tile, geo.oh);
      stage_spatial_rows(spat, b, y0, y1, sbuf.data(), geo);
      const scalar_t* feat_b = feat + b * geo.c * src_plane;
      const scalar_t* chan_b = chan + b * geo.c * kk;
      scalar_t* out_b = out + b * geo.c * plane;
      with_combination(geo, [&](auto combination) {
        UPSAMPLE_PLUGIN_CALL_ISA(forward_unit, combination, feat_b, chan_b, sbuf.data(), out_b, y0, y1, xbuf.data(),
                                 cbuf.data(), xrow.data(), plan, geo);
      });
    }
  });
}

template <typename scalar_t>
void feature_grad_kernel(const scalar_t* grad, const scalar_t* chan, const scalar_t* spat, scalar_t* grad_feat,
                         const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, ow = geo.ow, kk = geo.kk;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w;
  const PlanStorage ps(geo);
  const Plan& plan = ps.plan;
  const int64_t tile = tile_rows(geo.h, geo.n), tiles = (geo.h + tile - 1) / tile;
  const int64_t out_rows = std::min(geo.oh, (tile - 1 + 2 * geo.r * geo.d) / s + 1);  // of one tile
  at::parallel_for(0, geo.n * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> sbuf(out_rows * kk * ow);  // [y][t][x]: spatial filter of the output rows reading the tile
    std::vector<acc_t> gbuf(kDdfBlock * out_rows * ow), cbuf(kDdfBlock * kk);
    std::vector<const acc_t*> grow(kDdfBlock * k), sprow(k);
    std::vector<int64_t> yrow(k), iys(k);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t b = unit / tiles, p0 = unit % tiles * tile, p1 = std::min(p0 + tile, geo.h);
      int64_t yl, yh;
      isa_base::output_row_range(p0, p1, geo, yl, yh);
      stage_spatial_rows(spat, b, yl, yh, sbuf.data(), geo);
      const scalar_t* grad_b = grad + b * geo.c * plane;
      const scalar_t* chan_b = chan + b * geo.c * kk;
      scalar_t* dst = grad_feat + b * geo.c * src_plane;
      with_combination(geo, [&](auto combination) {
        UPSAMPLE_PLUGIN_CALL_ISA(feature_grad_unit, combination, grad_b, chan_b, sbuf.data(), dst, p0, p1,
                                 gbuf.data(), cbuf.data(), grow.data(), sprow.data(), yrow.data(), iys.data(), plan,
                                 geo);
      });
    }
  });
}

template <typename scalar_t>
void spatial_grad_kernel(const scalar_t* grad, const scalar_t* feat, const scalar_t* chan, scalar_t* grad_spat,
                         const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = geo.k, s = geo.s, ow = geo.ow, kk = geo.kk;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w;
  const PlanStorage ps(geo);
  const Plan& plan = ps.plan;
  const int64_t tile = tile_rows(geo.oh, geo.n), tiles = (geo.oh + tile - 1) / tile;
  const int64_t in_rows = std::min(geo.h, (tile - 1) * s + 2 * geo.r * geo.d + 1);
  at::parallel_for(0, geo.n * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> abuf(tile * kk * ow);  // [y][t][x]
    std::vector<acc_t> xbuf(kDdfBlock * in_rows * s * plan.plen), gbuf(kDdfBlock * tile * ow), cbuf(kDdfBlock * kk);
    std::vector<const acc_t*> xrow(kDdfBlock * k);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t b = unit / tiles, y0 = unit % tiles * tile, y1 = std::min(y0 + tile, geo.oh);
      const scalar_t* grad_b = grad + b * geo.c * plane;
      const scalar_t* feat_b = feat + b * geo.c * src_plane;
      const scalar_t* chan_b = chan + b * geo.c * kk;
      scalar_t* dst = grad_spat + b * kk * plane;
      with_combination(geo, [&](auto combination) {
        UPSAMPLE_PLUGIN_CALL_ISA(spatial_grad_unit, combination, grad_b, feat_b, chan_b, dst, y0, y1, abuf.data(),
                                 xbuf.data(), gbuf.data(), cbuf.data(), xrow.data(), plan, geo);
      });
    }
  });
}

// channel_grad_unit for kernel size K (accumulators in registers; K = 0: any k, accumulators in memory).
template <int K, typename scalar_t, typename acc_t>
void channel_grad_call(const scalar_t* grad, const scalar_t* feat, const scalar_t* spat, int64_t nch, scalar_t* dst,
                       acc_t* gT, acc_t* xT, acc_t* spT, acc_t* accbuf, int64_t* colL, const acc_t** xr,
                       const Plan& plan, const Geometry& geo) {
  using KTag = std::integral_constant<int, K>;
  with_combination(geo, [&](auto combination) {
    UPSAMPLE_PLUGIN_CALL_ISA(channel_grad_unit, KTag(), combination, grad, feat, spat, nch, dst, gT, xT, spT, accbuf,
                             colL, xr, plan, geo);
  });
}

template <typename scalar_t>
void channel_grad_kernel(const scalar_t* grad, const scalar_t* feat, const scalar_t* spat, scalar_t* grad_chan,
                         const Geometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  // Channels per unit: a multiple of the lanes of the widest build (64-byte vectors, so of every build's), up to
  // 4 such groups while there are at least 2 units per thread. Results do not depend on it.
  constexpr int64_t kLanesMax = 64 / sizeof(acc_t);
  const int64_t per_thread = geo.n * geo.c / (2 * static_cast<int64_t>(at::get_num_threads()) * kLanesMax);
  const int64_t group = kLanesMax * std::max<int64_t>(1, std::min<int64_t>(4, per_thread));
  const int64_t k = geo.k, ow = geo.ow, kk = geo.kk;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w, ring = (k - 1) * geo.d + 1;
  const int64_t groups = (geo.c + group - 1) / group;
  const PlanStorage ps(geo);
  const Plan& plan = ps.plan;
  at::parallel_for(0, geo.n * groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> gT(ow * kLanesMax), xT(group * ring * geo.w), spT(ow * kk);
    std::vector<acc_t> accstore(group * kk + kLanesMax);  // 64-byte aligned inside
    acc_t* accbuf = accstore.data();
    while (reinterpret_cast<uintptr_t>(accbuf) % 64 != 0) ++accbuf;
    std::vector<int64_t> colL(k);
    std::vector<const acc_t*> xr(k);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t g = unit % groups, b = unit / groups;
      const int64_t c0 = g * group, nch = std::min(group, geo.c - c0);
      const scalar_t* grad_c = grad + (b * geo.c + c0) * plane;
      const scalar_t* feat_c = feat + (b * geo.c + c0) * src_plane;
      const scalar_t* spat_b = spat + b * kk * plane;
      scalar_t* dst = grad_chan + (b * geo.c + c0) * kk;
      switch (k) {
#define UPSAMPLE_PLUGIN_DDF_CHANNEL_GRAD(K)                                                                      \
  channel_grad_call<K>(grad_c, feat_c, spat_b, nch, dst, gT.data(), xT.data(), spT.data(), accbuf, colL.data(), \
                       xr.data(), plan, geo)
        case 1: UPSAMPLE_PLUGIN_DDF_CHANNEL_GRAD(1); break;
        case 3: UPSAMPLE_PLUGIN_DDF_CHANNEL_GRAD(3); break;
        case 5: UPSAMPLE_PLUGIN_DDF_CHANNEL_GRAD(5); break;
        default: UPSAMPLE_PLUGIN_DDF_CHANNEL_GRAD(0); break;
#undef UPSAMPLE_PLUGIN_DDF_CHANNEL_GRAD
      }
    }
  });
}

at::Tensor ddf_forward_cpu(const at::Tensor& features, const at::Tensor& channel_filter,
                           const at::Tensor& spatial_filter, int64_t kernel_size, int64_t dilation, int64_t stride,
                           c10::string_view combine) {
  const Geometry geo =
      ddf_check_forward(features, channel_filter, spatial_filter, kernel_size, dilation, stride, combine);
  check_device_type(features, "features", c10::DeviceType::CPU);
  const auto options = features.options().memory_format(at::MemoryFormat::Contiguous);
  if (geo.n * geo.c * geo.oh * geo.ow == 0) return at::zeros({geo.n, geo.c, geo.oh, geo.ow}, options);
  const at::Tensor f = features.contiguous(), cf = channel_filter.contiguous(), sf = spatial_filter.contiguous();
  at::Tensor out = cpu::empty_output({geo.n, geo.c, geo.oh, geo.ow}, options);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "ddf_forward_cpu", [&] {
    forward_kernel<scalar_t>(f.const_data_ptr<scalar_t>(), cf.const_data_ptr<scalar_t>(),
                             sf.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), geo);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ddf_backward_cpu(const at::Tensor& grad_output,
                                                                const at::Tensor& features,
                                                                const at::Tensor& channel_filter,
                                                                const at::Tensor& spatial_filter, int64_t kernel_size,
                                                                int64_t dilation, int64_t stride,
                                                                c10::string_view combine) {
  const Geometry geo = ddf_check_backward(grad_output, features, channel_filter, spatial_filter, kernel_size,
                                          dilation, stride, combine);
  check_device_type(features, "features", c10::DeviceType::CPU);
  const auto options = features.options().memory_format(at::MemoryFormat::Contiguous);
  if (grad_output.numel() == 0) {  // no output pixel: every gradient is 0
    return {at::zeros(features.sizes(), options), at::zeros(channel_filter.sizes(), options),
            at::zeros(spatial_filter.sizes(), options)};
  }
  const at::Tensor d = grad_output.contiguous(), f = features.contiguous(), cf = channel_filter.contiguous(),
                   sf = spatial_filter.contiguous();
  at::Tensor grad_features = cpu::empty_output(features.sizes(), options);
  at::Tensor grad_channel = cpu::empty_output(channel_filter.sizes(), options);
  at::Tensor grad_spatial = cpu::empty_output(spatial_filter.sizes(), options);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "ddf_backward_cpu", [&] {
    const scalar_t* dp = d.const_data_ptr<scalar_t>();
    const scalar_t* fp = f.const_data_ptr<scalar_t>();
    const scalar_t* cp = cf.const_data_ptr<scalar_t>();
    const scalar_t* sp = sf.const_data_ptr<scalar_t>();
    feature_grad_kernel<scalar_t>(dp, cp, sp, grad_features.mutable_data_ptr<scalar_t>(), geo);
    channel_grad_kernel<scalar_t>(dp, fp, sp, grad_channel.mutable_data_ptr<scalar_t>(), geo);
    spatial_grad_kernel<scalar_t>(dp, fp, cp, grad_spatial.mutable_data_ptr<scalar_t>(), geo);
  });
  return {grad_features, grad_channel, grad_spatial};
}

}  // namespace

TORCH_LIBRARY_IMPL(upsample_plugin, CPU, m) {
  m.impl("ddf_forward", &ddf_forward_cpu);
  m.impl("ddf_backward", &ddf_backward_cpu);
}

}  // namespace ddf
}  // namespace upsample_plugin
