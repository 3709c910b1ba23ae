// Hot loops of the DDF CPU kernels (cpu/ddf_cpu.cpp; per-element definitions in include/ddf_common.h).
// Per-instruction-set header (include/cpu_isa_instantiate.h): no include guard, no #includes; V = vec_t<acc_t>.
// The tap tables (ColTap, GatherTap, GatherPhase, Plan) are defined by ddf_cpu.cpp before this is read.
//
// Bitwise: every lane is one result element's sum, with the terms in the order, the operand order and the
// parenthesisation of the per-element definitions (and of the previous row kernels): (sp * cv) * x,
// dout * (sp * cv), (dout * x) * cv, (dout * x) * sp, each product rounded, then added (no FMA: include/
// cpu_isa.h), from +0, taps outside the map skipped (not added as zeros). So every instruction set, vector width,
// tile and thread count gives the same bits.
// * Forward and spatial-filter gradient: lanes are output columns x. Tap (iy, ix) of column x reads input column
//   x*s + (ix - r)*d = (x + q)*s + p; input rows are read as their s phases (ph_p[j] = row[j*s + p], staged;
//   stride 1 and float/double: the rows themselves), so a tap of a lane group is one unaligned load.
// * Feature gradient: lanes are input columns px = j*s + p of one phase p; column tap ix adds to phase p iff
//   (p - off) is a multiple of s, from output column j + sh (a gather: each value is written by one unit).
// * In both, the columns whose taps are all inside the map ([xl, xr), [jl, jr)) run in vectors without checks
//   (the row tail in halved vectors), the few border columns one lane at a time, skipping the taps outside.
//   Channels go in blocks of kDdfBlock: a spatial-filter vector is loaded once per block, the block's forward /
//   feature-gradient accumulators stay in registers, the spatial-filter gradient's accumulator row is loaded
//   and stored once per block. Staged channel filters are [t][cb], row pointers [iy][cb] (constant offsets).
// * Channel-filter gradient: one sequential sum per (b, c, t) over rows then columns. Lanes are channels (rows
//   staged channel-transposed, tile[x*L + l] = channel l at column x, by in-register transposes), so each lane
//   is exactly its channel's sequential sum, and the k*k taps are k*k independent accumulator chains.
// Work units (cpu/ddf_cpu.cpp) are tiles of rows, so a channel block's input rows are reused by the tile's
// rows from the cache.

constexpr int64_t kDdfBlock = 4;

// body(std::integral_constant<int, NB>(), cb) over the channels [0, nb) of a block: a full block, else one by one.
template <typename F>
inline void for_sub_blocks(int64_t nb, F&& body) {
  int64_t cb = 0;
  for (; cb + kDdfBlock <= nb; cb += kDdfBlock) body(std::integral_constant<int, kDdfBlock>(), cb);
  for (; cb < nb; ++cb) body(std::integral_constant<int, 1>(), cb);
}

// A vector of `bytes` bytes of acc_t (a power of two, more than one lane): this build's vectors and their halves.
template <typename acc_t, int bytes>
struct SubVec {
  typedef acc_t type __attribute__((vector_size(bytes)));
};

// body(W(), x) over the columns [x, end): vectors of this build's width, then one of each halved width, then
// single lanes (W = acc_t), so a row tail costs a few narrower vectors, not one lane at a time.
template <int bytes, typename acc_t, typename F>
inline void each_vector(int64_t x, int64_t end, F&& body) {
  if constexpr (bytes > static_cast<int>(sizeof(acc_t))) {
    using W = typename SubVec<acc_t, bytes>::type;
    constexpr int64_t L = bytes / static_cast<int64_t>(sizeof(acc_t));
    if constexpr (bytes == kVecBytes) {
      for (; x + L <= end; x += L) body(W(), x);
    } else if (x + L <= end) {
      body(W(), x);
      x += L;
    }
    each_vector<bytes / 2, acc_t>(x, end, body);
  } else {
    for (; x < end; ++x) body(acc_t(), x);
  }
}

// dst[p*plen + j] = src[j*s + p] converted to acc_t, for j*s + p < w (the s phases of an input row).
template <typename scalar_t, typename acc_t>
inline void stage_phases(const scalar_t* __restrict__ src, acc_t* __restrict__ dst, int64_t w, int64_t s,
                         int64_t plen) {
  if (s == 1) {
    for (int64_t x = 0; x < w; ++x) dst[x] = static_cast<acc_t>(src[x]);
    return;
  }
  if (s == 2) {
    const int64_t half = w / 2;
    for (int64_t j = 0; j < half; ++j) {
      dst[j] = static_cast<acc_t>(src[2 * j]);
      dst[plen + j] = static_cast<acc_t>(src[2 * j + 1]);
    }
    if (w % 2) dst[half] = static_cast<acc_t>(src[w - 1]);
    return;
  }
  for (int64_t p = 0; p < s; ++p)
    for (int64_t j = 0; j * s + p < w; ++j) dst[p * plen + j] = static_cast<acc_t>(src[j * s + p]);
}

// ---- forward ---------------------------------------------------------------------------------------------------

// out[cb*plane + x + lanes) for NB channels: sum over tap rows [iy0, iy1), column taps ix of
// F * x, F = (sp * cv) ('mul') or (sp + cv); CHECK (one lane): skip taps outside the map.
template <int NB, bool MUL, bool CHECK, typename V, typename acc_t, typename scalar_t>
inline void forward_columns(const acc_t* sbuf, const acc_t* const* xrow, const acc_t* cv, int64_t iy0, int64_t iy1,
                            int64_t x, scalar_t* out, int64_t plane, const Plan& plan, const Geometry& geo) {
  const int64_t k = geo.k, ow = geo.ow;
  V acc[NB];
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb) acc[cb] = V{};
  for (int64_t iy = iy0; iy < iy1; ++iy) {
    const acc_t* xr[NB];
#pragma GCC unroll 8
    for (int cb = 0; cb < NB; ++cb) xr[cb] = xrow[iy * kDdfBlock + cb] + x;
    const acc_t* sp = sbuf + iy * k * ow + x;
    const acc_t* c = cv + iy * k * kDdfBlock;
    for (int64_t ix = 0; ix < k; ++ix) {
      const ColTap& ct = plan.col[ix];
      if (CHECK && (x < ct.x0 || x >= ct.x1)) continue;
      const V s = load<V, acc_t>(sp + ix * ow);
#pragma GCC unroll 8
      for (int cb = 0; cb < NB; ++cb) {
        const acc_t cval = c[ix * kDdfBlock + cb];  // vector op scalar: the scalar broadcast into every lane
        const V f = MUL ? s * cval : s + cval;
        acc[cb] = acc[cb] + f * load<V, acc_t>(xr[cb] + ct.o);
      }
    }
  }
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb) store<V, acc_t>(out + cb * plane + x, acc[cb]);
}

template <int NB, bool MUL, typename acc_t, typename scalar_t>
inline void forward_row(const acc_t* sbuf, const acc_t* const* xrow, const acc_t* cv, int64_t iy0, int64_t iy1,
                        scalar_t* out, int64_t plane, const Plan& plan, const Geometry& geo) {
  for (int64_t x = 0; x < plan.xl; ++x)
    forward_columns<NB, MUL, true, acc_t>(sbuf, xrow, cv, iy0, iy1, x, out, plane, plan, geo);
  each_vector<kVecBytes, acc_t>(plan.xl, plan.xr, [&](auto w, int64_t x) {
    forward_columns<NB, MUL, false, decltype(w)>(sbuf, xrow, cv, iy0, iy1, x, out, plane, plan, geo);
  });
  for (int64_t x = plan.xr; x < geo.ow; ++x)
    forward_columns<NB, MUL, true, acc_t>(sbuf, xrow, cv, iy0, iy1, x, out, plane, plan, geo);
}

// Input rows [rho0, rho1) of channel plane src as the column taps read them, for `nb` channels (plane stride
// src_plane): base[cb] points to row rho0 of channel cb, rows `*rstride` apart. Stride 1 and acc_t: the rows
// themselves; else their phases staged in xbuf ([cb][row][phase][j], rows s*plen apart).
template <typename scalar_t, typename acc_t>
inline void input_rows(const scalar_t* src, int64_t src_plane, int64_t nb, int64_t rho0, int64_t rho1, acc_t* xbuf,
                       const acc_t** base, int64_t* rstride, const Geometry& geo, int64_t plen) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (geo.s == 1) {
      for (int64_t cb = 0; cb < nb; ++cb) base[cb] = src + cb * src_plane + rho0 * geo.w;
      *rstride = geo.w;
      return;
    }
  }
  const int64_t rs = geo.s * plen, rows = rho1 - rho0;
  for (int64_t cb = 0; cb < nb; ++cb) {
    acc_t* dst = xbuf + cb * rows * rs;
    for (int64_t row = rho0; row < rho1; ++row)
      stage_phases(src + cb * src_plane + row * geo.w, dst + (row - rho0) * rs, geo.w, geo.s, plen);
    base[cb] = dst;
  }
  *rstride = rs;
}

// Rows [rho0, rho1) of the input rows that output rows [y0, y1) read (clamped to the map).
inline void input_row_range(int64_t y0, int64_t y1, const Geometry& geo, int64_t& rho0, int64_t& rho1) {
  rho0 = y0 * geo.s - geo.r * geo.d;
  rho1 = (y1 - 1) * geo.s + geo.r * geo.d + 1;
  if (rho0 < 0) rho0 = 0;
  if (rho1 > geo.h) rho1 = geo.h;
  if (rho1 < rho0) rho1 = rho0;
}

// Filter rows [iy0, iy1) of output row y whose input rows y*s + (iy - r)*d lie inside the map (they are
// consecutive; none: iy0 == iy1 == k).
inline void filter_rows_in_map(int64_t y, const Geometry& geo, int64_t& iy0, int64_t& iy1) {
  iy0 = geo.k;
  iy1 = 0;
  for (int64_t iy = 0; iy < geo.k; ++iy) {
    const int64_t row = y * geo.s + (iy - geo.r) * geo.d;
    if (row < 0 || row >= geo.h) continue;
    if (iy < iy0) iy0 = iy;
    iy1 = iy + 1;
  }
  if (iy1 < iy0) iy1 = iy0;
}

// xrow[iy*kDdfBlock + cb] = the staged input row (input_rows: base, rstride, first row rho0) that filter row iy of
// output row y reads, for channels cb < nb and filter rows iy in [iy0, iy1) (filter_rows_in_map).
template <typename acc_t>
inline void point_filter_rows(int64_t y, const acc_t* const* base, int64_t rstride, int64_t rho0, int64_t nb,
                              int64_t iy0, int64_t iy1, const acc_t** xrow, const Geometry& geo) {
  for (int64_t iy = iy0; iy < iy1; ++iy) {
    const int64_t row = y * geo.s + (iy - geo.r) * geo.d;
    for (int64_t cb = 0; cb < nb; ++cb) xrow[iy * kDdfBlock + cb] = base[cb] + (row - rho0) * rstride;
  }
}

// cbuf[t*kDdfBlock + cb] = tap t of channel cb's filter (chan: the first channel's), cb < nb, in acc_t.
template <typename scalar_t, typename acc_t>
inline void stage_channel_filters(const scalar_t* chan, int64_t nb, int64_t kk, acc_t* cbuf) {
  for (int64_t cb = 0; cb < nb; ++cb)
    for (int64_t t = 0; t < kk; ++t) cbuf[t * kDdfBlock + cb] = static_cast<acc_t>(chan[cb * kk + t]);
}

// Output rows [y0, y1) of batch element b for all channels. feat, chan: the batch element's features / channel
// filter; sbuf[(y - y0)*k*k*OW + t*OW + x]: spatial filter of those rows; out: output plane of channel 0.
// Scratch: xbuf kDdfBlock*(input rows of the tile)*s*plen, cbuf k*k*kDdfBlock ([t][cb]), xrow k*kDdfBlock
// pointers ([iy][cb]). Per channel block, the rows of the tile in order (reusing the block's input rows).
template <bool MUL, typename scalar_t, typename acc_t>
void forward_unit(std::integral_constant<bool, MUL>, const scalar_t* feat, const scalar_t* chan, const acc_t* sbuf,
                  scalar_t* out, int64_t y0, int64_t y1, acc_t* xbuf, acc_t* cbuf, const acc_t** xrow,
                  const Plan& plan, const Geometry& geo) {
  const int64_t kk = geo.kk, ow = geo.ow, plane = geo.oh * ow, src_plane = geo.h * geo.w;
  int64_t rho0, rho1;
  input_row_range(y0, y1, geo, rho0, rho1);
  for (int64_t c0 = 0; c0 < geo.c; c0 += kDdfBlock) {
    const int64_t nb = geo.c - c0 < kDdfBlock ? geo.c - c0 : kDdfBlock;
    stage_channel_filters(chan + c0 * kk, nb, kk, cbuf);
    const acc_t* base[kDdfBlock];
    int64_t rstride;
    input_rows(feat + c0 * src_plane, src_plane, nb, rho0, rho1, xbuf, base, &rstride, geo, plan.plen);
    for (int64_t y = y0; y < y1; ++y) {
      int64_t iy0, iy1;
      filter_rows_in_map(y, geo, iy0, iy1);
      point_filter_rows(y, base, rstride, rho0, nb, iy0, iy1, xrow, geo);
      const acc_t* sy = sbuf + (y - y0) * kk * ow;
      scalar_t* o = out + c0 * plane + y * ow;
      for_sub_blocks(nb, [&](auto nbt, int64_t cb) {
        forward_row<decltype(nbt)::value, MUL>(sy, xrow + cb, cbuf + cb, iy0, iy1, o + cb * plane, plane,
                                               plan, geo);
      });
    }
  }
}

// ---- feature gradient ------------------------------------------------------------------------------------------

// Input columns px = (j + l)*s + p (lanes l) of NB channels: sum over the unit's tap rows iys[0..niy) (in order)
// and the column taps of phase p (in ix order) of dout * F, dout and F at output column j + sh.
template <int NB, bool MUL, bool CHECK, typename V, typename acc_t, typename scalar_t>
inline void feature_grad_columns(const acc_t* const* sprow, const acc_t* const* grow, const acc_t* cv,
                                 const int64_t* iys, int64_t niy, const GatherPhase& ph, int64_t j, scalar_t* dst,
                                 int64_t src_plane, const Plan& plan, const Geometry& geo) {
  const int64_t k = geo.k, s = geo.s;
  V acc[NB];
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb) acc[cb] = V{};
  for (int64_t n = 0; n < niy; ++n) {
    const int64_t iy = iys[n];
    const acc_t* gr[NB];
#pragma GCC unroll 8
    for (int cb = 0; cb < NB; ++cb) gr[cb] = grow[iy * kDdfBlock + cb] + j;
    const acc_t* sp = sprow[iy] + j;
    const acc_t* c = cv + iy * k * kDdfBlock;
    for (int64_t g = ph.begin; g < ph.end; ++g) {
      const GatherTap& gt = plan.gather[g];
      if (CHECK && (j + gt.sh < gt.x0 || j + gt.sh >= gt.x1)) continue;
      const V spv = load<V, acc_t>(sp + gt.so);
#pragma GCC unroll 8
      for (int cb = 0; cb < NB; ++cb) {
        const acc_t cval = c[gt.co + cb];
        const V f = MUL ? spv * cval : spv + cval;
        acc[cb] = acc[cb] + load<V, acc_t>(gr[cb] + gt.sh) * f;
      }
    }
  }
  if (s == 1) {
#pragma GCC unroll 8
    for (int cb = 0; cb < NB; ++cb) store<V, acc_t>(dst + cb * src_plane + j, acc[cb]);
  } else {
    constexpr int64_t L = lanes<V, acc_t>();
    for (int cb = 0; cb < NB; ++cb) {
      acc_t tmp[L];
      __builtin_memcpy(tmp, &acc[cb], sizeof(V));
      scalar_t* d = dst + cb * src_plane + j * s + ph.p;
      for (int64_t l = 0; l < L; ++l) d[l * s] = static_cast<scalar_t>(tmp[l]);
    }
  }
}

template <int NB, bool MUL, typename acc_t, typename scalar_t>
inline void feature_grad_row(const acc_t* const* sprow, const acc_t* const* grow, const acc_t* cv,
                             const int64_t* iys, int64_t niy, scalar_t* dst, int64_t src_plane, const Plan& plan,
                             const Geometry& geo) {
  for (int64_t p = 0; p < geo.s; ++p) {
    const GatherPhase& ph = plan.phase[p];
    for (int64_t j = 0; j < ph.jl; ++j)
      feature_grad_columns<NB, MUL, true, acc_t>(sprow, grow, cv, iys, niy, ph, j, dst, src_plane, plan, geo);
    each_vector<kVecBytes, acc_t>(ph.jl, ph.jr, [&](auto w, int64_t j) {
      feature_grad_columns<NB, MUL, false, decltype(w)>(sprow, grow, cv, iys, niy, ph, j, dst, src_plane, plan, geo);
    });
    for (int64_t j = ph.jr; j < ph.nj; ++j)
      feature_grad_columns<NB, MUL, true, acc_t>(sprow, grow, cv, iys, niy, ph, j, dst, src_plane, plan, geo);
  }
}

// Output rows [yl, yh) that input rows [p0, p1) are read by (clamped to the output map).
inline void output_row_range(int64_t p0, int64_t p1, const Geometry& geo, int64_t& yl, int64_t& yh) {
  const int64_t lo = p0 - geo.r * geo.d, hi = p1 - 1 + geo.r * geo.d;  // y*s in [lo, hi]
  yl = lo <= 0 ? 0 : (lo + geo.s - 1) / geo.s;
  yh = hi < 0 ? 0 : hi / geo.s + 1;
  if (yh > geo.oh) yh = geo.oh;
  if (yh < yl) yh = yl;
}

// d features of input rows [p0, p1) of batch element b, all channels: a gather over the output rows yrow[iy]
// that read each of them through its tap rows iys[0..niy). grad, chan: the batch element's grad_output / channel
// filter; sbuf[(y - yl)*k*k*OW + t*OW + x]: spatial filter of the output rows [yl, yh) (output_row_range); dst:
// gradient plane of channel 0. Scratch: gbuf kDdfBlock*(yh - yl)*OW, cbuf k*k*kDdfBlock ([t][cb]), grow
// k*kDdfBlock ([iy][cb]) and sprow k pointers, yrow and iys k values.
template <bool MUL, typename scalar_t, typename acc_t>
void feature_grad_unit(std::integral_constant<bool, MUL>, const scalar_t* grad, const scalar_t* chan,
                       const acc_t* sbuf, scalar_t* dst, int64_t p0, int64_t p1, acc_t* gbuf, acc_t* cbuf,
                       const acc_t** grow, const acc_t** sprow, int64_t* yrow, int64_t* iys, const Plan& plan,
                       const Geometry& geo) {
  const int64_t k = geo.k, kk = geo.kk, ow = geo.ow, plane = geo.oh * ow, src_plane = geo.h * geo.w;
  int64_t yl, yh;
  output_row_range(p0, p1, geo, yl, yh);
  for (int64_t c0 = 0; c0 < geo.c; c0 += kDdfBlock) {
    const int64_t nb = geo.c - c0 < kDdfBlock ? geo.c - c0 : kDdfBlock;
    const acc_t* base[kDdfBlock];
    int64_t gstride = ow;
    stage_channel_filters(chan + c0 * kk, nb, kk, cbuf);
    for (int64_t cb = 0; cb < nb; ++cb) {
      const scalar_t* g = grad + (c0 + cb) * plane + yl * ow;
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        base[cb] = g;
      } else {
        acc_t* b = gbuf + cb * (yh - yl) * ow;
        for (int64_t i = 0; i < (yh - yl) * ow; ++i) b[i] = static_cast<acc_t>(g[i]);
        base[cb] = b;
      }
    }
    for (int64_t py = p0; py < p1; ++py) {
      int64_t niy = 0;
      for (int64_t iy = 0; iy < k; ++iy) {
        yrow[iy] = source_of(py, (iy - geo.r) * geo.d, geo.s, geo.oh);
        if (yrow[iy] < 0) continue;
        iys[niy++] = iy;
        sprow[iy] = sbuf + (yrow[iy] - yl) * kk * ow + iy * k * ow;
        for (int64_t cb = 0; cb < nb; ++cb) grow[iy * kDdfBlock + cb] = base[cb] + (yrow[iy] - yl) * gstride;
      }
      scalar_t* d = dst + c0 * src_plane + py * geo.w;
      for_sub_blocks(nb, [&](auto nbt, int64_t cb) {
        feature_grad_row<decltype(nbt)::value, MUL>(sprow, grow + cb, cbuf + cb, iys, niy,
                                                    d + cb * src_plane, src_plane, plan, geo);
      });
    }
  }
}

// ---- spatial-filter gradient -----------------------------------------------------------------------------------

// abuf[t*OW + x + lanes) += the NB channels' terms in channel order: (dout * x) * cv ('mul') or dout * x ('add').
template <int NB, bool MUL, bool CHECK, typename V, typename acc_t>
inline void spatial_grad_columns(acc_t* abuf, const acc_t* const* grow, const acc_t* const* xrow, const acc_t* cv,
                                 int64_t iy0, int64_t iy1, int64_t x, const Plan& plan, const Geometry& geo) {
  const int64_t k = geo.k, ow = geo.ow;
  V g[NB];
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb) g[cb] = load<V, acc_t>(grow[cb] + x);
  for (int64_t iy = iy0; iy < iy1; ++iy) {
    const acc_t* xr[NB];
#pragma GCC unroll 8
    for (int cb = 0; cb < NB; ++cb) xr[cb] = xrow[iy * kDdfBlock + cb] + x;
    acc_t* arow = abuf + iy * k * ow + x;
    const acc_t* c = cv + iy * k * kDdfBlock;
    for (int64_t ix = 0; ix < k; ++ix) {
      const ColTap& ct = plan.col[ix];
      if (CHECK && (x < ct.x0 || x >= ct.x1)) continue;
      acc_t* a = arow + ix * ow;
      V v = load<V, acc_t>(a);
#pragma GCC unroll 8
      for (int cb = 0; cb < NB; ++cb) {
        const V prod = g[cb] * load<V, acc_t>(xr[cb] + ct.o);
        if (MUL) {
          v = v + prod * c[ix * kDdfBlock + cb];
        } else {
          v = v + prod;
        }
      }
      store<V, acc_t>(a, v);
    }
  }
}

template <int NB, bool MUL, typename acc_t>
inline void spatial_grad_row(acc_t* abuf, const acc_t* const* grow, const acc_t* const* xrow, const acc_t* cv,
                             int64_t iy0, int64_t iy1, const Plan& plan, const Geometry& geo) {
  for (int64_t x = 0; x < plan.xl; ++x)
    spatial_grad_columns<NB, MUL, true, acc_t>(abuf, grow, xrow, cv, iy0, iy1, x, plan, geo);
  each_vector<kVecBytes, acc_t>(plan.xl, plan.xr, [&](auto w, int64_t x) {
    spatial_grad_columns<NB, MUL, false, decltype(w)>(abuf, grow, xrow, cv, iy0, iy1, x, plan, geo);
  });
  for (int64_t x = plan.xr; x < geo.ow; ++x)
    spatial_grad_columns<NB, MUL, true, acc_t>(abuf, grow, xrow, cv, iy0, iy1, x, plan, geo);
}

// d spatial filter of output rows [y0, y1) of batch element b: abuf[(y - y0)*k*k*OW + t*OW + x] = sum over the
// channels, in channel order. grad, feat, chan: the batch element's; dst: grad_spatial + b*k*k*OH*OW. Scratch: abuf
// (y1 - y0)*k*k*OW, xbuf kDdfBlock*(input rows of the tile)*s*plen, gbuf kDdfBlock*(y1 - y0)*OW, cbuf
// k*k*kDdfBlock ([t][cb]), xrow k*kDdfBlock pointers ([iy][cb]).
template <bool MUL, typename scalar_t, typename acc_t>
void spatial_grad_unit(std::integral_constant<bool, MUL>, const scalar_t* grad, const scalar_t* feat,
                       const scalar_t* chan, scalar_t* dst, int64_t y0, int64_t y1, acc_t* abuf, acc_t* xbuf,
                       acc_t* gbuf, acc_t* cbuf, const acc_t** xrow, const Plan& plan, const Geometry& geo) {
  const int64_t kk = geo.kk, ow = geo.ow, plane = geo.oh * ow, src_plane = geo.h * geo.w;
  int64_t rho0, rho1;
  input_row_range(y0, y1, geo, rho0, rho1);
  for (int64_t i = 0; i < (y1 - y0) * kk * ow; ++i) abuf[i] = acc_t(0);
  for (int64_t c0 = 0; c0 < geo.c; c0 += kDdfBlock) {
    const int64_t nb = geo.c - c0 < kDdfBlock ? geo.c - c0 : kDdfBlock;
    const acc_t* gbase[kDdfBlock];
    stage_channel_filters(chan + c0 * kk, nb, kk, cbuf);
    for (int64_t cb = 0; cb < nb; ++cb) {
      const scalar_t* g = grad + (c0 + cb) * plane + y0 * ow;
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        gbase[cb] = g;
      } else {
        acc_t* b = gbuf + cb * (y1 - y0) * ow;
        for (int64_t i = 0; i < (y1 - y0) * ow; ++i) b[i] = static_cast<acc_t>(g[i]);
        gbase[cb] = b;
      }
    }
    const acc_t* base[kDdfBlock];
    int64_t rstride;
    input_rows(feat + c0 * src_plane, src_plane, nb, rho0, rho1, xbuf, base, &rstride, geo, plan.plen);
    for (int64_t y = y0; y < y1; ++y) {
      int64_t iy0, iy1;
      filter_rows_in_map(y, geo, iy0, iy1);
      point_filter_rows(y, base, rstride, rho0, nb, iy0, iy1, xrow, geo);
      const acc_t* grow[kDdfBlock];
      for (int64_t cb = 0; cb < nb; ++cb) grow[cb] = gbase[cb] + (y - y0) * ow;
      acc_t* a = abuf + (y - y0) * kk * ow;
      for_sub_blocks(nb, [&](auto nbt, int64_t cb) {
        spatial_grad_row<decltype(nbt)::value, MUL>(a, grow + cb, xrow + cb, cbuf + cb, iy0, iy1, plan,
                                                    geo);
      });
    }
  }
  for (int64_t y = y0; y < y1; ++y)  // taps outside the map stay 0
    for (int64_t t = 0; t < kk; ++t)
      for (int64_t x = 0; x < ow; ++x)
        dst[t * plane + y * ow + x] = static_cast<scalar_t>(abuf[((y - y0) * kk + t) * ow + x]);
}

// ---- channel-filter gradient -----------------------------------------------------------------------------------

// Interleaves of two vectors of W (lanes n): lo = {a0, b0, a1, b1, ...} (first halves), hi = the second halves.
template <typename W, int64_t n, size_t... I>
inline W interleave_lo(W a, W b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, static_cast<int>((I % 2) * n + I / 2)...);
}
template <typename W, int64_t n, size_t... I>
inline W interleave_hi(W a, W b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, static_cast<int>((I % 2) * n + n / 2 + I / 2)...);
}

// dst[x*L + l] = src[l*stride + x] for x, l < L (an L x L transpose in registers; data movement only).
template <typename V, typename acc_t>
inline void transpose_tile(const acc_t* src, int64_t stride, acc_t* dst) {
  constexpr int64_t L = lanes<V, acc_t>();
  V r[L];
#pragma GCC unroll 16
  for (int64_t i = 0; i < L; ++i) r[i] = load<V, acc_t>(src + i * stride);
  if constexpr (L == 8) {
    // The same permutation in 24 shuffles that stay within 4-lane halves until the last step (what the
    // unpack / shuffle / permute2f128 instructions do): t = pairs interleaved, u = quads, out = halves joined.
    V t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
      t[2 * i + 1] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {  // rows 4h..4h+3
      u[4 * h + 0] = __builtin_shufflevector(t[4 * h], t[4 * h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      u[4 * h + 1] = __builtin_shufflevector(t[4 * h], t[4 * h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
      u[4 * h + 2] = __builtin_shufflevector(t[4 * h + 1], t[4 * h + 3], 0, 1, 8, 9, 4, 5, 12, 13);
      u[4 * h + 3] = __builtin_shufflevector(t[4 * h + 1], t[4 * h + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      store<V, acc_t>(dst + i * L, __builtin_shufflevector(u[i], u[4 + i], 0, 1, 2, 3, 8, 9, 10, 11));
      store<V, acc_t>(dst + (4 + i) * L, __builtin_shufflevector(u[i], u[4 + i], 4, 5, 6, 7, 12, 13, 14, 15));
    }
    return;
  }
#pragma GCC unroll 4
  for (int64_t round = 1; round < L; round *= 2) {  // log2(L) perfect shuffles transpose the tile
    V o[L];
#pragma GCC unroll 16
    for (int64_t i = 0; i < L / 2; ++i) {
      o[2 * i] = interleave_lo<V, L>(r[i], r[i + L / 2], std::make_index_sequence<L>());
      o[2 * i + 1] = interleave_hi<V, L>(r[i], r[i + L / 2], std::make_index_sequence<L>());
    }
#pragma GCC unroll 16
    for (int64_t i = 0; i < L; ++i) r[i] = o[i];
  }
#pragma GCC unroll 16
  for (int64_t i = 0; i < L; ++i) store<V, acc_t>(dst + i * L, r[i]);
}

// dst[x*L + l] = channel l's src[l*stride + x] converted to acc_t for l < nv, 0 for the unused lanes.
template <typename scalar_t, typename acc_t>
inline void stage_transposed(const scalar_t* __restrict__ src, int64_t stride, int64_t nv, int64_t len,
                             acc_t* __restrict__ dst) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = lanes<V, acc_t>();
  int64_t x0 = 0;
  if constexpr (std::is_same_v<scalar_t, acc_t> && L > 1) {
    if (nv == L)
      for (; x0 + L <= len; x0 += L) transpose_tile<V, acc_t>(src + x0, stride, dst + x0 * L);
  }
  for (int64_t l = 0; l < nv; ++l) {
    const scalar_t* s = src + l * stride;
    for (int64_t x = x0; x < len; ++x) dst[x * L + l] = static_cast<acc_t>(s[x]);
  }
  for (int64_t l = nv; l < L; ++l)
    for (int64_t x = x0; x < len; ++x) dst[x * L + l] = acc_t(0);
}

// One output column x of one row: acc[t] (lanes = channels) += (dout * x) * sp ('mul') or dout * x, taps t in
// tap rows [iy0, iy1); CHECK: skip column taps outside the map. xr[iy]: transposed input row of tap row iy;
// colL[ix] = (ix - r)*d*L; spT[x*k*k + t]: spatial filter of the row. K > 0: k = K (accumulators in registers).
template <int K, bool MUL, bool CHECK, typename V, typename acc_t>
inline __attribute__((always_inline)) void channel_grad_column(V* acc, const acc_t* gT, const acc_t* const* xr,
                                                               const int64_t* colL, const acc_t* spT, int64_t iy0,
                                                               int64_t iy1, int64_t x, const Plan& plan,
                                                               const Geometry& geo) {
  constexpr int64_t L = lanes<V, acc_t>();
  const int64_t k = K > 0 ? K : geo.k, kk = k * k;
  const V g = load<V, acc_t>(gT + x * L);
  const acc_t* sp = spT + x * kk;
  const int64_t xs = x * geo.s * L;
#pragma GCC unroll 8
  for (int64_t iy = 0; iy < k; ++iy) {
    if (iy < iy0 || iy >= iy1) continue;
    const acc_t* row = xr[iy] + xs;
#pragma GCC unroll 8
    for (int64_t ix = 0; ix < k; ++ix) {
      if (CHECK && (x < plan.col[ix].x0 || x >= plan.col[ix].x1)) continue;
      const int64_t t = iy * k + ix;
      const V v = g * load<V, acc_t>(row + colL[ix]);
      if (MUL) {
        acc[t] = acc[t] + v * sp[t];
      } else {
        acc[t] = acc[t] + v;
      }
    }
  }
}

template <int K, bool MUL, typename V, typename acc_t>
inline __attribute__((always_inline)) void channel_grad_row(V* acc, const acc_t* gT, const acc_t* const* xr,
                                                            const int64_t* colL, const acc_t* spT, int64_t iy0,
                                                            int64_t iy1, const Plan& plan, const Geometry& geo) {
  int64_t x = 0;
  for (; x < plan.xl; ++x) channel_grad_column<K, MUL, true, V>(acc, gT, xr, colL, spT, iy0, iy1, x, plan, geo);
  for (; x < plan.xr; ++x) channel_grad_column<K, MUL, false, V>(acc, gT, xr, colL, spT, iy0, iy1, x, plan, geo);
  for (; x < geo.ow; ++x) channel_grad_column<K, MUL, true, V>(acc, gT, xr, colL, spT, iy0, iy1, x, plan, geo);
}

// d channel filter of `nch` channels of batch element b: dst[c*k*k + t] = sum over rows then columns of tap t's
// terms, each (channel, tap) one sequential sum (channel_grad_element). grad, feat: grad_output / features plane of
// the first channel; spat: the batch element's spatial filter. Channels go in blocks of L (the lanes of this
// build), transposed; rows in order, and per row every block (its accumulators kept in accbuf between rows).
// Scratch: gT OW*L (grad_output row y of a block), xT (blocks)*R*W*L (per block a ring of R = (k-1)*d + 1
// transposed input rows, row % R), spT OW*k*k (spatial filter of row y, [x][t]), accbuf (blocks)*k*k*L,
// 64-byte aligned, colL k values. K == 0: any k (accumulators in accbuf).
template <int K, bool MUL, typename scalar_t, typename acc_t>
void channel_grad_unit(std::integral_constant<int, K>, std::integral_constant<bool, MUL>, const scalar_t* grad,
                       const scalar_t* feat, const scalar_t* spat, int64_t nch, scalar_t* dst, acc_t* gT, acc_t* xT,
                       acc_t* spT, acc_t* accbuf, int64_t* colL, const acc_t** xr, const Plan& plan,
                       const Geometry& geo) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = lanes<V, acc_t>();
  const int64_t k = K > 0 ? K : geo.k, kk = k * k, s = geo.s, d = geo.d, r = geo.r, w = geo.w;
  const int64_t ow = geo.ow, plane = geo.oh * ow, src_plane = geo.h * w, ring = (k - 1) * d + 1;
  const int64_t blocks = (nch + L - 1) / L;
  V* accv = reinterpret_cast<V*>(accbuf);  // [block][t]
  for (int64_t i = 0; i < blocks * kk; ++i) accv[i] = V{};
  for (int64_t ix = 0; ix < k; ++ix) colL[ix] = plan.col[ix].off * L;
  int64_t next = 0;  // input rows below `next` are staged (or never needed)
  for (int64_t y = 0; y < geo.oh; ++y) {
    const int64_t lo = y * s - r * d, hi_raw = y * s + r * d, hi = hi_raw < geo.h - 1 ? hi_raw : geo.h - 1;
    const int64_t first = lo > next ? (lo > 0 ? lo : 0) : next;
    if (hi + 1 > next) next = hi + 1;
    int64_t iy0, iy1;
    filter_rows_in_map(y, geo, iy0, iy1);
    if (MUL && iy1 > iy0) {
      const scalar_t* sp = spat + y * ow;
      for (int64_t t = iy0 * k; t < iy1 * k; ++t)
        for (int64_t x = 0; x < ow; ++x) spT[x * kk + t] = static_cast<acc_t>(sp[t * plane + x]);
    }
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t c0 = blk * L, nv = nch - c0 < L ? nch - c0 : L;
      acc_t* ring_b = xT + blk * ring * w * L;
      for (int64_t row = first; row <= hi; ++row)
        stage_transposed(feat + c0 * src_plane + row * w, src_plane, nv, w, ring_b + (row % ring) * w * L);
      if (iy1 <= iy0) continue;
      stage_transposed(grad + c0 * plane + y * ow, plane, nv, ow, gT);
      for (int64_t iy = iy0; iy < iy1; ++iy) xr[iy] = ring_b + ((y * s + (iy - r) * d) % ring) * w * L;
      if constexpr (K > 0) {
        V acc[K * K];
#pragma GCC unroll 64
        for (int64_t t = 0; t < K * K; ++t) acc[t] = accv[blk * kk + t];
        channel_grad_row<K, MUL, V>(acc, gT, xr, colL, spT, iy0, iy1, plan, geo);
#pragma GCC unroll 64
        for (int64_t t = 0; t < K * K; ++t) accv[blk * kk + t] = acc[t];
      } else {
        channel_grad_row<K, MUL, V>(accv + blk * kk, gT, xr, colL, spT, iy0, iy1, plan, geo);
      }
    }
  }
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * L, nv = nch - c0 < L ? nch - c0 : L;
    for (int64_t t = 0; t < kk; ++t) {
      acc_t tmp[L];
      __builtin_memcpy(tmp, &accv[blk * kk + t], sizeof(V));
      for (int64_t l = 0; l < nv; ++l) dst[(c0 + l) * kk + t] = static_cast<scalar_t>(tmp[l]);
    }
  }
}
