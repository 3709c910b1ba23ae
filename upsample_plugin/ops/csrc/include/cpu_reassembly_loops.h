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
//   value is loaded once per block (not once per channel) and no accumulator goes through memory.
// Each lane is one output element's sum, in the tap order of the per-element definitions (a, then b), each
// product rounded and added separately, so every instruction set gives the same bits (include/cpu_isa.h).
//
// Scratch layouts (uw = (W + 2r)*s, pw = OW + 2r*s; the zero borders are written once by the caller):
//   xbuf  kChannelBlock * k * uw   [cb][a][u]   upsampled feature rows y0 + a - r, r*s zeros each side
//   kbuf  k*k * s * OW             [t][i][q]    forward: kernels of output rows y0*s + i
//   kpad  k*k * s * pw             [t][i][u]    feature gradient: kernels of output rows (y0 - a + r)*s + i
//                                                (tap row a), r*s zeros each side
//   dpad  kChannelBlock * k * s * pw [cb][a][i][u] grad_output rows (y0 - a + r)*s + i, r*s zeros each side
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

// kernel_grad_columns for kernel size K known at compile time: the K taps of a tap row are K independent
// accumulator chains (each still adds the block's channels in order), which hides the add latency that a single
// chain per tap (the channel sum is sequential) is bound by.
template <int NB, int K, typename V, typename acc_t, typename scalar_t, typename Geo>
inline void kernel_grad_columns_k(acc_t* macc, const acc_t* xbuf, const scalar_t* grad, int64_t plane, int64_t a0,
                                  int64_t a1, int64_t i, int64_t q, const Geo& geo) {
  const int64_t s = geo.s, ow = geo.ow, uw = (geo.w + 2 * geo.r) * s, xstride = K * uw;
  V d[NB];
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb) d[cb] = load<V, acc_t>(grad + cb * plane + i * ow + q);
  for (int64_t a = a0; a < a1; ++a) {
    acc_t* m = macc + (a * K * s + i) * ow + q;  // tap (a, b) at m + b*s*ow
    const acc_t* x = xbuf + a * uw + q;
    V v[K];
#pragma GCC unroll 8
    for (int b = 0; b < K; ++b) v[b] = load<V, acc_t>(m + b * s * ow);
#pragma GCC unroll 8
    for (int cb = 0; cb < NB; ++cb)
#pragma GCC unroll 8
      for (int b = 0; b < K; ++b) v[b] = v[b] + d[cb] * load<V, acc_t>(x + cb * xstride + b * s);
#pragma GCC unroll 8
    for (int b = 0; b < K; ++b) store<V, acc_t>(m + b * s * ow, v[b]);
  }
}

template <int NB, typename acc_t, typename scalar_t, typename Geo>
inline void kernel_grad_block(acc_t* macc, const acc_t* xbuf, const scalar_t* grad, int64_t plane, int64_t a0,
                              int64_t a1, const Geo& geo) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = lanes<V, acc_t>();
  for (int64_t i = 0; i < geo.s; ++i) {
    int64_t q = 0;
    if (geo.k == 5) {
      for (; q + L <= geo.ow; q += L) kernel_grad_columns_k<NB, 5, V>(macc, xbuf, grad, plane, a0, a1, i, q, geo);
    } else if (geo.k == 3) {
      for (; q + L <= geo.ow; q += L) kernel_grad_columns_k<NB, 3, V>(macc, xbuf, grad, plane, a0, a1, i, q, geo);
    }
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

// tbuf[cb][u] = sum over tap rows a in [a0, a1), i < s, b < k (in that order) of
// grad[c, (y0 - a + r)*s + i, u + (r - b)*s] * K[a*k + b, same pixel], for output columns u in [u, u + lanes).
template <int NB, typename V, typename acc_t, typename Geo>
inline void feature_grad_columns(const acc_t* kpad, const acc_t* dpad, acc_t* tbuf, int64_t a0, int64_t a1,
                                 int64_t u, const Geo& geo) {
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow, pw = ow + 2 * r * s, dstride = k * s * pw;
  V acc[NB];
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb) acc[cb] = V{};
  for (int64_t a = a0; a < a1; ++a) {
    for (int64_t i = 0; i < s; ++i) {
      const acc_t* drow = dpad + (a * s + i) * pw + u;
      for (int64_t b = 0; b < k; ++b) {
        const int64_t col = (2 * r - b) * s;  // padded column of output column u + (r - b)*s
        const V m = load<V, acc_t>(kpad + ((a * k + b) * s + i) * pw + u + col);
#pragma GCC unroll 8
        for (int cb = 0; cb < NB; ++cb) acc[cb] = acc[cb] + load<V, acc_t>(drow + cb * dstride + col) * m;
      }
    }
  }
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb) store<V, acc_t>(tbuf + cb * ow + u, acc[cb]);
}

template <int NB, typename acc_t, typename Geo>
inline void feature_grad_block(const acc_t* kpad, const acc_t* dpad, acc_t* tbuf, int64_t a0, int64_t a1,
                               const Geo& geo) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = lanes<V, acc_t>();
  int64_t u = 0;
  for (; u + L <= geo.ow; u += L) feature_grad_columns<NB, V>(kpad, dpad, tbuf, a0, a1, u, geo);
  for (; u < geo.ow; ++u) feature_grad_columns<NB, acc_t>(kpad, dpad, tbuf, a0, a1, u, geo);
}

// d features of low-res row y0 for `channels` channels: a gather over the output rows that read it (tap rows a in
// [a0, a1) = gather_tap_begin/end), no atomics. grad: grad_output plane of the first channel; dst: gradient
// plane of the first channel + row y0. Sum order: (a, i, b) per output column, then the s columns of each
// low-res column in order (the previous row kernels' order).
template <typename scalar_t, typename acc_t, typename Geo>
void feature_grad_unit(const scalar_t* grad, const acc_t* kpad, int64_t channels, int64_t y0, int64_t a0,
                       int64_t a1, acc_t* dpad, acc_t* tbuf, scalar_t* dst, const Geo& geo) {
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow, pw = ow + 2 * r * s;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w;
  for (int64_t c0 = 0; c0 < channels; c0 += kChannelBlock) {
    const int64_t nb = channels - c0 < kChannelBlock ? channels - c0 : kChannelBlock;
    for (int64_t cb = 0; cb < nb; ++cb)
      for (int64_t a = a0; a < a1; ++a)
        for (int64_t i = 0; i < s; ++i)
          stage_row(grad + (c0 + cb) * plane + ((y0 - a + r) * s + i) * ow, dpad + ((cb * k + a) * s + i) * pw + r * s,
                    ow);
    if (nb == kChannelBlock) {
      feature_grad_block<kChannelBlock>(kpad, dpad, tbuf, a0, a1, geo);
    } else {
      for (int64_t cb = 0; cb < nb; ++cb)
        feature_grad_block<1>(kpad, dpad + cb * k * s * pw, tbuf + cb * ow, a0, a1, geo);
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
