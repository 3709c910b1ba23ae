// Hot loops of CARAFE-style reassembly on the CPU, shared by CARAFE (cpu/carafe_cpu.cpp) and the fused DLU
// (cpu/dlu_cpu.cpp): out[c, p, q] = sum over taps (a, b) of K[a*k + b, p, q] * x[c, p/s + a - r, q/s + b - r].
// Per-instruction-set header (include/cpu_isa_instantiate.h): no include guard, no #includes; V = vec_t<acc_t>.
//
// A work unit is one low-res row y0 of one (n, group): its s output rows all have parent row y0. The caller
// stages the unit's kernels K (CARAFE: its masks; DLU: the kernels it samples) in acc_t, and scratch buffers
// once per thread; these loops then walk the group's channels in blocks of kChannelBlock:
// * the block's feature rows are staged "upsampled and zero-padded": xu[u] = x[u/s - r], so tap (a, b) of a whole
//   output row is the contiguous slice xu_a[b*s : b*s + OW] (one unaligned vector load per lane group);
// * each vector of output columns accumulates its taps in registers for all channels of the block, so a kernel
//   value is loaded once per block (not once per channel) and no accumulator goes through memory; at x2 both
//   output rows share each feature load;
// * the feature gradient reads grad_output in place where every tap of a column lies inside the map, and a
//   zero-padded staged copy (dpad) in the r*s border columns.
// Each lane is one output element's sum, in the tap order of the per-element definitions (a, then b), each
// product rounded and added separately, so every instruction set gives the same bits (include/cpu_isa.h).
//
// Scratch layouts (uw = (W + 2r)*s, pw = OW + 2r*s; the zero borders are written once by the caller):
//   xbuf  kChannelBlock * k * uw   [cb][a][u]   upsampled feature rows y0 + a - r, r*s zeros each side
//   kbuf  k*k * s * OW             [t][i][q]    forward: kernels of output rows y0*s + i
//   kpad  k*k * s * pw             [t][i][u]    feature gradient: kernels of output rows (y0 - a + r)*s + i
//                                                (tap row a), r*s zeros each side
//   dpad  kChannelBlock * k * s * pw  scratch: the border columns' grad_output rows, zero-padded
//   tbuf  kChannelBlock * OW        [cb][u]      feature-gradient sums in output columns, before the s-sums

constexpr int64_t kChannelBlock = 4;

// dst[x] = src[x] converted to acc_t, x < len.
template <typename scalar_t, typename acc_t>
inline void stage_row(const scalar_t* __restrict__ src, acc_t* __restrict__ dst, int64_t len) {
  for (int64_t x = 0; x < len; ++x) dst[x] = static_cast<acc_t>(src[x]);
}

// dst[x*s + j] = src[x], x < w, j < s (the middle of an xbuf row).
template <typename scalar_t, typename acc_t>
inline void stage_upsampled_row(const scalar_t* __restrict__ src, acc_t* __restrict__ dst, int64_t w, int64_t s) {
  if (s == 1) {
    stage_row(src, dst, w);
    return;
  }
  if (s == 2) {  // the common ratio: a constant stride the compiler vectorises (interleaving stores)
    for (int64_t x = 0; x < w; ++x) {
      const acc_t v = static_cast<acc_t>(src[x]);
      dst[2 * x] = v;
      dst[2 * x + 1] = v;
    }
    return;
  }
  for (int64_t x = 0; x < w; ++x) {
    const acc_t v = static_cast<acc_t>(src[x]);
    for (int64_t j = 0; j < s; ++j) dst[x * s + j] = v;
  }
}

// ---- forward ---------------------------------------------------------------------------------------------------

// Output columns [q, q + QV*lanes) of output row i of the unit for NB channels: out + cb*plane + i*OW + q.
// QV vectors side by side give QV*NB independent accumulator chains, enough to hide the add latency.
template <int NB, int QV, typename V, typename acc_t, typename scalar_t, typename Geo>
inline void reassemble_columns(const acc_t* kbuf, const acc_t* xbuf, int64_t a0, int64_t a1, int64_t i, int64_t q,
                               scalar_t* out, int64_t plane, const Geo& geo) {
  constexpr int64_t L = lanes<V, acc_t>();
  const int64_t k = geo.k, s = geo.s, ow = geo.ow, uw = (geo.w + 2 * geo.r) * s, xstride = k * uw;
  V acc[NB][QV];
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb)
#pragma GCC unroll 4
    for (int v = 0; v < QV; ++v) acc[cb][v] = V{};
  for (int64_t a = a0; a < a1; ++a) {
    for (int64_t b = 0; b < k; ++b) {
      const acc_t* kp = kbuf + ((a * k + b) * s + i) * ow + q;
      const acc_t* x = xbuf + a * uw + b * s + q;
      V m[QV];
#pragma GCC unroll 4
      for (int v = 0; v < QV; ++v) m[v] = load<V, acc_t>(kp + v * L);
#pragma GCC unroll 8
      for (int cb = 0; cb < NB; ++cb)
#pragma GCC unroll 4
        for (int v = 0; v < QV; ++v) acc[cb][v] = acc[cb][v] + m[v] * load<V, acc_t>(x + cb * xstride + v * L);
    }
  }
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb)
#pragma GCC unroll 4
    for (int v = 0; v < QV; ++v) store<V, acc_t>(out + cb * plane + i * ow + q + v * L, acc[cb][v]);
}

// Output columns [q, q + lanes) of all S (= s) output rows of the unit for NB channels at once: the S rows read
// the same feature values (tap (a, b) of row i reads xu_a[q + b*s] for every i), so each is loaded once for S*NB
// multiply-adds. Same sums, same order as reassemble_columns.
template <int NB, int S, typename V, typename acc_t, typename scalar_t, typename Geo>
inline void reassemble_columns_rows(const acc_t* kbuf, const acc_t* xbuf, int64_t a0, int64_t a1, int64_t q,
                                    scalar_t* out, int64_t plane, const Geo& geo) {
  const int64_t k = geo.k, ow = geo.ow, uw = (geo.w + 2 * geo.r) * S, xstride = k * uw;
  V acc[NB][S];
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb)
#pragma GCC unroll 4
    for (int i = 0; i < S; ++i) acc[cb][i] = V{};
  for (int64_t a = a0; a < a1; ++a) {
    const acc_t* kp = kbuf + a * k * S * ow + q;  // tap (a, b), row i at kp + (b*S + i)*ow
    const acc_t* x = xbuf + a * uw + q;           // tap (a, b) at x + b*S
    for (int64_t b = 0; b < k; ++b, kp += S * ow, x += S) {
      V m[S];
#pragma GCC unroll 4
      for (int i = 0; i < S; ++i) m[i] = load<V, acc_t>(kp + i * ow);
#pragma GCC unroll 8
      for (int cb = 0; cb < NB; ++cb) {
        const V xv = load<V, acc_t>(x + cb * xstride);
#pragma GCC unroll 4
        for (int i = 0; i < S; ++i) acc[cb][i] = acc[cb][i] + m[i] * xv;
      }
    }
  }
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb)
#pragma GCC unroll 4
    for (int i = 0; i < S; ++i) store<V, acc_t>(out + cb * plane + i * ow + q, acc[cb][i]);
}

template <int NB, typename acc_t, typename scalar_t, typename Geo>
inline void reassemble_block(const acc_t* kbuf, const acc_t* xbuf, int64_t a0, int64_t a1, scalar_t* out,
                             int64_t plane, const Geo& geo) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = lanes<V, acc_t>();
  if (geo.s == 2) {  // the common ratio: both output rows at once
    int64_t q = 0;
    for (; q + L <= geo.ow; q += L) reassemble_columns_rows<NB, 2, V>(kbuf, xbuf, a0, a1, q, out, plane, geo);
    for (; q < geo.ow; ++q) reassemble_columns_rows<NB, 2, acc_t>(kbuf, xbuf, a0, a1, q, out, plane, geo);
    return;
  }
  for (int64_t i = 0; i < geo.s; ++i) {
    int64_t q = 0;
    for (; q + 2 * L <= geo.ow; q += 2 * L) reassemble_columns<NB, 2, V>(kbuf, xbuf, a0, a1, i, q, out, plane, geo);
    for (; q + L <= geo.ow; q += L) reassemble_columns<NB, 1, V>(kbuf, xbuf, a0, a1, i, q, out, plane, geo);
    for (; q < geo.ow; ++q) reassemble_columns<NB, 1, acc_t>(kbuf, xbuf, a0, a1, i, q, out, plane, geo);
  }
}

// The unit's s output rows for `channels` channels. feat: features plane of the first channel; out: output
// plane of the first channel + row y0*s; taps a in [a0, a1) read rows inside the map.
template <typename scalar_t, typename acc_t, typename Geo>
void reassemble_unit(const acc_t* kbuf, const scalar_t* feat, scalar_t* out, int64_t channels, int64_t y0,
                     int64_t a0, int64_t a1, acc_t* xbuf, const Geo& geo) {
  const int64_t k = geo.k, s = geo.s, r = geo.r, uw = (geo.w + 2 * r) * s;
  const int64_t plane = geo.oh * geo.ow, src_plane = geo.h * geo.w;
  for (int64_t c0 = 0; c0 < channels; c0 += kChannelBlock) {
    const int64_t nb = channels - c0 < kChannelBlock ? channels - c0 : kChannelBlock;
    for (int64_t cb = 0; cb < nb; ++cb)
      for (int64_t a = a0; a < a1; ++a)
        stage_upsampled_row(feat + (c0 + cb) * src_plane + (y0 + a - r) * geo.w, xbuf + (cb * k + a) * uw + r * s,
                            geo.w, s);
    if (nb == kChannelBlock) {
      reassemble_block<kChannelBlock>(kbuf, xbuf, a0, a1, out + c0 * plane, plane, geo);
    } else {
      for (int64_t cb = 0; cb < nb; ++cb)
        reassemble_block<1>(kbuf, xbuf + cb * k * uw, a0, a1, out + (c0 + cb) * plane, plane, geo);
    }
  }
}

// ---- kernel (mask) gradient ------------------------------------------------------------------------------------

// macc[t][i][q] += sum over the block's channels (in channel order) of grad[c][i][q] * xu_c[a][q + b*s].
template <int NB, typename V, typename acc_t, typename scalar_t, typename Geo>
inline void kernel_grad_columns(acc_t* macc, const acc_t* xbuf, const scalar_t* grad, int64_t plane, int64_t a0,
                                int64_t a1, int64_t i, int64_t q, const Geo& geo) {
  const int64_t k = geo.k, s = geo.s, ow = geo.ow, uw = (geo.w + 2 * geo.r) * s, xstride = k * uw;
  V d[NB];
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb) d[cb] = load<V, acc_t>(grad + cb * plane + i * ow + q);
  for (int64_t a = a0; a < a1; ++a) {
    for (int64_t b = 0; b < k; ++b) {
      acc_t* m = macc + ((a * k + b) * s + i) * ow + q;
      const acc_t* x = xbuf + a * uw + b * s + q;
      V v = load<V, acc_t>(m);
#pragma GCC unroll 8
      for (int cb = 0; cb < NB; ++cb) v = v + d[cb] * load<V, acc_t>(x + cb * xstride);
      store<V, acc_t>(m, v);
    }
  }
}

template <int NB, typename acc_t, typename scalar_t, typename Geo>
inline void kernel_grad_block(acc_t* macc, const acc_t* xbuf, const scalar_t* grad, int64_t plane, int64_t a0,
                              int64_t a1, const Geo& geo) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = lanes<V, acc_t>();
  for (int64_t i = 0; i < geo.s; ++i) {
    int64_t q = 0;
    for (; q + L <= geo.ow; q += L) kernel_grad_columns<NB, V>(macc, xbuf, grad, plane, a0, a1, i, q, geo);
    for (; q < geo.ow; ++q) kernel_grad_columns<NB, acc_t>(macc, xbuf, grad, plane, a0, a1, i, q, geo);
  }
}

// dL/dK of the unit's output pixels: macc[t][i][q] = sum over `channels` channels, in channel order, of
// grad[c, y0*s + i, q] * x[c, y0 + a - r, q/s + b - r] (CARAFE's mask_grad_element). Taps a outside [a0, a1)
// stay 0. grad: grad_output plane of the first channel + row y0*s; feat: features plane of the first channel.
template <typename scalar_t, typename acc_t, typename Geo>
void kernel_grad_unit(const scalar_t* grad, const scalar_t* feat, int64_t channels, int64_t y0, int64_t a0,
                      int64_t a1, acc_t* macc, acc_t* xbuf, const Geo& geo) {
  const int64_t k = geo.k, s = geo.s, r = geo.r, uw = (geo.w + 2 * r) * s;
  const int64_t plane = geo.oh * geo.ow, src_plane = geo.h * geo.w;
  for (int64_t t = 0; t < geo.kk * s * geo.ow; ++t) macc[t] = acc_t(0);
  for (int64_t c0 = 0; c0 < channels; c0 += kChannelBlock) {
    const int64_t nb = channels - c0 < kChannelBlock ? channels - c0 : kChannelBlock;
    for (int64_t cb = 0; cb < nb; ++cb)
      for (int64_t a = a0; a < a1; ++a)
        stage_upsampled_row(feat + (c0 + cb) * src_plane + (y0 + a - r) * geo.w, xbuf + (cb * k + a) * uw + r * s,
                            geo.w, s);
    if (nb == kChannelBlock) {
      kernel_grad_block<kChannelBlock>(macc, xbuf, grad + c0 * plane, plane, a0, a1, geo);
    } else {
      for (int64_t cb = 0; cb < nb; ++cb)
        kernel_grad_block<1>(macc, xbuf + cb * k * uw, grad + (c0 + cb) * plane, plane, a0, a1, geo);
    }
  }
}

// ---- feature gradient ------------------------------------------------------------------------------------------

// Where a channel block's grad_output rows are read: output column q of row (cb, tap row a, i) is
// base[cb*cb_stride + a*a_stride + i*i_stride + q - q_first]. Either grad_output itself (the columns whose taps
// all stay inside the map) or a staged copy of a border region, zero-padded by r*s columns each side.
template <typename T>
struct GradRows {
  const T* base;
  int64_t cb_stride, a_stride, i_stride, q_first;
};

// tbuf[cb][u] = sum over tap rows a in [a0, a1), i < s, b < k (in that order) of
// grad[c, (y0 - a + r)*s + i, u + (r - b)*s] * K[a*k + b, same pixel], for output columns u in [u, u + lanes).
template <int NB, typename V, typename acc_t, typename T, typename Geo>
inline void feature_grad_columns(const acc_t* kpad, const GradRows<T>& rows, acc_t* tbuf, int64_t a0, int64_t a1,
                                 int64_t u, const Geo& geo) {
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow, pw = ow + 2 * r * s;
  V acc[NB];
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb) acc[cb] = V{};
  for (int64_t a = a0; a < a1; ++a) {
    for (int64_t i = 0; i < s; ++i) {
      const T* drow = rows.base + a * rows.a_stride + i * rows.i_stride + (u - rows.q_first);
      const acc_t* krow = kpad + (a * k * s + i) * pw + r * s + u;
      for (int64_t b = 0; b < k; ++b) {
        const int64_t shift = (r - b) * s;  // tap b of output column u + shift reads low-res column of u
        const V m = load<V, acc_t>(krow + b * s * pw + shift);
#pragma GCC unroll 8
        for (int cb = 0; cb < NB; ++cb) acc[cb] = acc[cb] + load<V, acc_t>(drow + cb * rows.cb_stride + shift) * m;
      }
    }
  }
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb) store<V, acc_t>(tbuf + cb * ow + u, acc[cb]);
}

// feature_grad_columns over output columns [u0, u1), NB channels.
template <int NB, typename acc_t, typename T, typename Geo>
inline void feature_grad_region(const acc_t* kpad, const GradRows<T>& rows, acc_t* tbuf, int64_t u0, int64_t u1,
                                int64_t a0, int64_t a1, const Geo& geo) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = lanes<V, acc_t>();
  int64_t u = u0;
  for (; u + L <= u1; u += L) feature_grad_columns<NB, V>(kpad, rows, tbuf, a0, a1, u, geo);
  for (; u < u1; ++u) feature_grad_columns<NB, acc_t>(kpad, rows, tbuf, a0, a1, u, geo);
}

template <typename acc_t, typename T, typename Geo>
inline void feature_grad_region_channels(const acc_t* kpad, const GradRows<T>& rows, acc_t* tbuf, int64_t nb,
                                         int64_t u0, int64_t u1, int64_t a0, int64_t a1, const Geo& geo) {
  if (nb == kChannelBlock) {
    feature_grad_region<kChannelBlock>(kpad, rows, tbuf, u0, u1, a0, a1, geo);
    return;
  }
  for (int64_t cb = 0; cb < nb; ++cb) {
    GradRows<T> one = rows;
    one.base += cb * rows.cb_stride;
    feature_grad_region<1>(kpad, one, tbuf + cb * geo.ow, u0, u1, a0, a1, geo);
  }
}

// Stages the grad_output rows of output columns [u0 - r*s, u1 + r*s) of a channel block into buf (zeros outside
// the map) and returns where to read them.
template <typename scalar_t, typename acc_t, typename Geo>
inline GradRows<acc_t> stage_grad_region(const scalar_t* grad_block, int64_t nb, int64_t y0, int64_t a0, int64_t a1,
                                         int64_t u0, int64_t u1, acc_t* buf, const Geo& geo) {
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow, plane = geo.oh * ow;
  const int64_t width = u1 - u0 + 2 * r * s, q_first = u0 - r * s;
  for (int64_t cb = 0; cb < nb; ++cb)
    for (int64_t a = a0; a < a1; ++a)
      for (int64_t i = 0; i < s; ++i) {
        const scalar_t* src = grad_block + cb * plane + ((y0 - a + r) * s + i) * ow;
        acc_t* dst = buf + ((cb * k + a) * s + i) * width;
        for (int64_t j = 0; j < width; ++j) {
          const int64_t q = q_first + j;
          dst[j] = (q >= 0 && q < ow) ? static_cast<acc_t>(src[q]) : acc_t(0);
        }
      }
  return GradRows<acc_t>{buf, k * s * width, s * width, width, q_first};
}

// d features of low-res row y0 for `channels` channels: a gather over the output rows that read it (tap rows a in
// [a0, a1) = gather_tap_begin/end), no atomics. grad: grad_output plane of the first channel; dst: gradient
// plane of the first channel + row y0. Sum order: (a, i, b) per output column, then the s columns of each
// low-res column in order (the previous row kernels' order).
template <typename scalar_t, typename acc_t, typename Geo>
void feature_grad_unit(const scalar_t* grad, const acc_t* kpad, int64_t channels, int64_t y0, int64_t a0,
                       int64_t a1, acc_t* dpad, acc_t* tbuf, scalar_t* dst, const Geo& geo) {
  constexpr int64_t L = lanes<vec_t<acc_t>, acc_t>();
  const int64_t s = geo.s, r = geo.r, ow = geo.ow, border = r * s;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w;
  // Columns [left, inner_end) read every tap inside the map: straight from grad_output. The border regions
  // [0, left) and [inner_end, ow) read a zero-padded staged copy (dpad), so no column needs a bounds test.
  const int64_t left = (L > border ? L : border) < ow ? (L > border ? L : border) : ow;
  int64_t inner_end = left;
  while (inner_end + L <= ow - border) inner_end += L;
  for (int64_t c0 = 0; c0 < channels; c0 += kChannelBlock) {
    const int64_t nb = channels - c0 < kChannelBlock ? channels - c0 : kChannelBlock;
    const scalar_t* grad_block = grad + c0 * plane;
    feature_grad_region_channels(kpad, stage_grad_region(grad_block, nb, y0, a0, a1, 0, left, dpad, geo), tbuf, nb,
                                 0, left, a0, a1, geo);
    if (inner_end > left) {
      const GradRows<scalar_t> direct{grad_block + (y0 + r) * s * ow, plane, -s * ow, ow, 0};
      feature_grad_region_channels(kpad, direct, tbuf, nb, left, inner_end, a0, a1, geo);
    }
    if (ow > inner_end) {
      feature_grad_region_channels(kpad, stage_grad_region(grad_block, nb, y0, a0, a1, inner_end, ow, dpad, geo),
                                   tbuf, nb, inner_end, ow, a0, a1, geo);
    }
    for (int64_t cb = 0; cb < nb; ++cb) {
      const acc_t* t = tbuf + cb * ow;
      scalar_t* d = dst + (c0 + cb) * src_plane;
      for (int64_t x = 0; x < geo.w; ++x) {
        acc_t v = acc_t(0);
        for (int64_t j = 0; j < s; ++j) v += t[x * s + j];
        d[x] = static_cast<scalar_t>(v);
      }
    }
  }
}
