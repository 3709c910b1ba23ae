// Hot loops of CARAFE-style reassembly on the CPU, shared by CARAFE (cpu/carafe_cpu.cpp) and the fused DLU
// (cpu/dlu_cpu.cpp): out[c, p, q] = sum over taps (a, b) of K[a*k + b, p, q] * x[c, p/s + a - r, q/s + b - r].
// Per-instruction-set header (include/cpu_isa_instantiate.h): no include guard, no #includes; V = vec_t<acc_t>.
//
// A work unit is one low-res row y0 of one (n, group): its s output rows all have parent row y0. The callers hand
// the loops up to kRowsPerCall consecutive units at once, with each unit's kernels K staged in acc_t (CARAFE: its
// masks; DLU: the kernels it samples), and scratch buffers allocated once per thread; the loops then walk the
// group's channels in blocks:
// * a block's feature rows are staged once for all the units that read them, "upsampled and zero-padded":
//   xu[u] = x[u/s - r], so tap (a, b) of a whole output row is the contiguous slice xu_a[b*s : b*s + OW] (one
//   unaligned vector load per lane group);
// * forward: each vector of output columns accumulates its taps in registers for all channels of the block, so a
//   kernel value is loaded once per block (not once per channel) and no accumulator goes through memory; at x2
//   both output rows share each feature load and the kernels are tiled by column vector (one sequential stream);
// * mask gradient: the k*s sums of a column vector stay in registers over a block of kKernelGradChannels channels;
// * the feature gradient reads grad_output in place where every tap of a column lies inside the map, and a
//   zero-padded staged copy (dpad) in the r*s border columns.
// Each lane is one output element's sum, in the tap order of the per-element definitions (a, then b), each
// product rounded and added separately, so every instruction set gives the same bits (include/cpu_isa.h).
//
// Scratch layouts (uw = (W + 2r)*s, pw = OW + 2r*s, R = staged_rows(kRowsPerCall, k); the zero borders are
// written once by the caller):
//   xbuf   kStagedChannels * R * uw   [cb][row][u]  upsampled feature rows y_first - r + row, r*s zeros each side
//   kbufs  kRowsPerCall * k*k*s*OW    [unit][t][i][q]  forward: kernels of output rows y0*s + i
//   ktiles as kbufs                   forward at x2: the same kernels tiled by column vector (tile_kernels)
//   maccs  as kbufs                   mask gradient: the sums
//   kpad   k*k * s * pw               [t][i][u]    feature gradient: kernels of output rows (y0 - a + r)*s + i
//                                                  (tap row a), r*s zeros each side
//   dpad   kChannelBlock * k * s * pw  scratch: the border columns' grad_output rows, zero-padded
//   tbuf   kChannelBlock * OW         [cb][u]      feature-gradient sums in output columns, before the s-sums

// Low-res rows per call of reassemble_rows / kernel_grad_rows: a channel block's staged feature rows serve this
// many units, so staging costs (kRowsPerCall + k - 1) / kRowsPerCall rows per unit instead of k.
constexpr int64_t kRowsPerCall = 4;
// Channels per block of the forward and the feature gradient: at x2 the forward's 2*6 accumulators, 2 kernel
// vectors and a feature vector fit in 16 vector registers (4 channels: 1.2x the time, measured).
constexpr int64_t kChannelBlock = 6;
// Channels the mask gradient stages per block (xbuf holds kStagedChannels channels): its accumulators are the
// k*s' kernel values of a column vector, kept in registers while the block's channels are summed in order, so a
// longer block means fewer loads and stores of the running sums.
constexpr int64_t kKernelGradChannels = 16;
constexpr int64_t kStagedChannels = kKernelGradChannels > kChannelBlock ? kKernelGradChannels : kChannelBlock;

// f(std::integral_constant<int, NB>{}, first) for sub-blocks [first, first + NB) covering [0, nb), nb <=
// kChannelBlock: one full block, else blocks of 4, then single channels (the loops are compiled for these NB).
template <typename F>
inline void for_sub_blocks(int64_t nb, F&& f) {
  if (nb == kChannelBlock) {
    f(std::integral_constant<int, static_cast<int>(kChannelBlock)>{}, int64_t{0});
    return;
  }
  int64_t c = 0;
  for (; c + 4 <= nb; c += 4) f(std::integral_constant<int, 4>{}, c);
  for (; c < nb; ++c) f(std::integral_constant<int, 1>{}, c);
}

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
inline void reassemble_columns(const acc_t* kbuf, const acc_t* xbuf, int64_t xstride, int64_t a0, int64_t a1,
                               int64_t i, int64_t q, scalar_t* out, int64_t plane, const Geo& geo) {
  constexpr int64_t L = lanes<V, acc_t>();
  const int64_t k = geo.k, s = geo.s, ow = geo.ow, uw = (geo.w + 2 * geo.r) * s;
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

// The unit's kernels for reassemble_columns_rows, tiled by column vector: the k*k*S values a vector of output
// columns reads lie together (one sequential stream per channel block, not k*k*S rows far apart). Column vector
// qv (lanes columns from qv*lanes) at ktile + qv*k*k*S*lanes, [t][i][lane]; the ow % lanes tail columns after the
// full vectors, one column at a time, [t][i].
template <int S, typename acc_t, typename Geo>
inline void tile_kernels(const acc_t* kbuf, acc_t* ktile, int64_t a0, int64_t a1, const Geo& geo) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = lanes<V, acc_t>();
  const int64_t k = geo.k, ow = geo.ow, per_column = geo.kk * S, full = ow / L * L;
  for (int64_t t = a0 * k * S; t < a1 * k * S; ++t) {  // t = (a*k + b)*S + i
    const acc_t* src = kbuf + t * ow;
    for (int64_t q = 0; q < full; q += L) store<V, acc_t>(ktile + q * per_column + t * L, load<V, acc_t>(src + q));
    for (int64_t q = full; q < ow; ++q) ktile[q * per_column + t] = src[q];
  }
}

// Output columns [q, q + lanes) of all S (= s) output rows of the unit for NB channels at once: the S rows read
// the same feature values (tap (a, b) of row i reads xu_a[q + b*s] for every i), so each is loaded once for S*NB
// multiply-adds. ktile: the columns' tile (tile_kernels). Same sums, same order as reassemble_columns.
template <int NB, int S, typename V, typename acc_t, typename scalar_t, typename Geo>
UPSAMPLE_PLUGIN_NOINLINE void reassemble_columns_rows(const acc_t* ktile, const acc_t* xbuf, int64_t xstride,
                                                      int64_t a0, int64_t a1, int64_t q, scalar_t* out, int64_t plane,
                                                      const Geo& geo) {
  constexpr int64_t L = lanes<V, acc_t>();
  const int64_t k = geo.k, ow = geo.ow, uw = (geo.w + 2 * geo.r) * S;
  V acc[NB][S];
#pragma GCC unroll 8
  for (int cb = 0; cb < NB; ++cb)
#pragma GCC unroll 4
    for (int i = 0; i < S; ++i) acc[cb][i] = V{};
  for (int64_t a = a0; a < a1; ++a) {
    const acc_t* kp = ktile + a * k * S * L;  // tap (a, b), row i at kp + (b*S + i)*L
    const acc_t* x = xbuf + a * uw + q;       // tap (a, b) at x + b*S
    for (int64_t b = 0; b < k; ++b, kp += S * L, x += S) {
      V m[S];
#pragma GCC unroll 4
      for (int i = 0; i < S; ++i) m[i] = load<V, acc_t>(kp + i * L);
#pragma GCC unroll 8
      for (int cb = 0; cb < NB; ++cb) {
        V xv = load<V, acc_t>(x + cb * xstride);
        keep_in_register(xv);  // one load for the S products (gcc would fold a load into each multiply)
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
inline void reassemble_block(const acc_t* kbuf, const acc_t* ktile, const acc_t* xbuf, int64_t xstride, int64_t a0,
                             int64_t a1, scalar_t* out, int64_t plane, const Geo& geo) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = lanes<V, acc_t>();
  if (geo.s == 2) {  // the common ratio: both output rows at once
    const int64_t per_column = geo.kk * 2;
    int64_t q = 0;
    for (; q + L <= geo.ow; q += L)
      reassemble_columns_rows<NB, 2, V>(ktile + q * per_column, xbuf, xstride, a0, a1, q, out, plane, geo);
    for (; q < geo.ow; ++q)
      reassemble_columns_rows<NB, 2, acc_t>(ktile + q * per_column, xbuf, xstride, a0, a1, q, out, plane, geo);
    return;
  }
  for (int64_t i = 0; i < geo.s; ++i) {
    int64_t q = 0;
    for (; q + 2 * L <= geo.ow; q += 2 * L)
      reassemble_columns<NB, 2, V>(kbuf, xbuf, xstride, a0, a1, i, q, out, plane, geo);
    for (; q + L <= geo.ow; q += L) reassemble_columns<NB, 1, V>(kbuf, xbuf, xstride, a0, a1, i, q, out, plane, geo);
    for (; q < geo.ow; ++q) reassemble_columns<NB, 1, acc_t>(kbuf, xbuf, xstride, a0, a1, i, q, out, plane, geo);
  }
}

// Feature rows the low-res rows [y_first, y_first + units) read: y_first - r .. y_first + units - 1 + r, one
// staged row each (xbuf rows per channel: staged_rows; rows outside the map are left as they are, never read).
inline int64_t staged_rows(int64_t units, int64_t k) { return units + k - 1; }

// xbuf[cb*xstride + (row - y_first + r)*uw + u] = x[c0 + cb, row, u/s - r] for the rows inside the map: each row
// once for all the units that read it (k of them), not once per unit.
template <typename scalar_t, typename acc_t, typename Geo>
inline void stage_feature_rows(const scalar_t* feat, int64_t nb, int64_t y_first, int64_t units, acc_t* xbuf,
                               int64_t xstride, const Geo& geo) {
  const int64_t r = geo.r, s = geo.s, uw = (geo.w + 2 * r) * s, src_plane = geo.h * geo.w;
  const int64_t row_begin = y_first - r > 0 ? y_first - r : 0;
  const int64_t row_end = y_first + units + r < geo.h ? y_first + units + r : geo.h;
  for (int64_t cb = 0; cb < nb; ++cb)
    for (int64_t row = row_begin; row < row_end; ++row)
      stage_upsampled_row(feat + cb * src_plane + row * geo.w, xbuf + cb * xstride + (row - y_first + r) * uw + r * s,
                          geo.w, s);
}

// The s output rows of the low-res rows [y_first, y_first + units) of one (n, g), for `channels` channels.
// kbufs: the kernels of unit u (low-res row y_first + u) at kbufs + u*k*k*s*OW, [t][i][q]; ktiles: as much
// scratch; feat: features plane of the first channel; out: output plane of the first channel + row y_first*s.
// Each channel block stages its feature rows once for all the units (stage_feature_rows).
template <typename scalar_t, typename acc_t, typename Geo>
void reassemble_rows(const acc_t* kbufs, const scalar_t* feat, scalar_t* out, int64_t channels, int64_t y_first,
                     int64_t units, acc_t* xbuf, acc_t* ktiles, const Geo& geo) {
  const int64_t k = geo.k, s = geo.s, r = geo.r, uw = (geo.w + 2 * r) * s;
  const int64_t plane = geo.oh * geo.ow, src_plane = geo.h * geo.w, unit_kernels = geo.kk * s * geo.ow;
  const int64_t xstride = staged_rows(units, k) * uw;
  if (s == 2)
    for (int64_t u = 0; u < units; ++u)
      tile_kernels<2>(kbufs + u * unit_kernels, ktiles + u * unit_kernels, tap_begin(y_first + u, r),
                      tap_end(y_first + u, r, k, geo.h), geo);
  for (int64_t c0 = 0; c0 < channels; c0 += kChannelBlock) {
    const int64_t nb = channels - c0 < kChannelBlock ? channels - c0 : kChannelBlock;
    stage_feature_rows(feat + c0 * src_plane, nb, y_first, units, xbuf, xstride, geo);
    for (int64_t u = 0; u < units; ++u) {
      const int64_t y0 = y_first + u, a0 = tap_begin(y0, r), a1 = tap_end(y0, r, k, geo.h);
      for_sub_blocks(nb, [&](auto nbc, int64_t first) {
        reassemble_block<decltype(nbc)::value>(kbufs + u * unit_kernels, ktiles + u * unit_kernels,
                                               xbuf + first * xstride + u * uw, xstride, a0, a1,
                                               out + (c0 + first) * plane + u * s * geo.ow, plane, geo);
      });
    }
  }
}

// ---- kernel (mask) gradient ------------------------------------------------------------------------------------

// macc[t][i][q] += sum over the block's channels (in channel order) of grad[c][i][q] * xu_c[a][q + b*s].
template <int NB, typename V, typename acc_t, typename scalar_t, typename Geo>
inline void kernel_grad_columns(acc_t* macc, const acc_t* xbuf, int64_t xstride, const scalar_t* grad, int64_t plane,
                                int64_t a0, int64_t a1, int64_t i, int64_t q, const Geo& geo) {
  const int64_t k = geo.k, s = geo.s, ow = geo.ow, uw = (geo.w + 2 * geo.r) * s;
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
inline void kernel_grad_block(acc_t* macc, const acc_t* xbuf, int64_t xstride, const scalar_t* grad, int64_t plane,
                              int64_t a0, int64_t a1, const Geo& geo) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = lanes<V, acc_t>();
  for (int64_t i = 0; i < geo.s; ++i) {
    int64_t q = 0;
    for (; q + L <= geo.ow; q += L) kernel_grad_columns<NB, V>(macc, xbuf, xstride, grad, plane, a0, a1, i, q, geo);
    for (; q < geo.ow; ++q) kernel_grad_columns<NB, acc_t>(macc, xbuf, xstride, grad, plane, a0, a1, i, q, geo);
  }
}

// The mask gradient with the running sums in registers: macc[(a*K + b)*s + i0 + ii][q, q + lanes) += the sum over
// the nb staged channels, in channel order, of grad[cb][i0 + ii][q..] * xu_cb[a][q + b*s ..], for every tap b < K
// and SI output rows at once. The K*SI sums are loaded and stored once per block of channels; each feature load
// serves SI rows, each grad_output load K taps. Same sums, same order as kernel_grad_columns.
template <int K, int SI, typename V, typename acc_t, typename scalar_t, typename Geo>
UPSAMPLE_PLUGIN_NOINLINE void kernel_grad_columns_taps(acc_t* macc, const acc_t* xbuf, int64_t xstride,
                                                       const scalar_t* grad, int64_t plane, int64_t nb, int64_t a0,
                                                       int64_t a1, int64_t i0, int64_t q, const Geo& geo) {
  const int64_t s = geo.s, ow = geo.ow, uw = (geo.w + 2 * geo.r) * s;
  for (int64_t a = a0; a < a1; ++a) {
    acc_t* m = macc + (a * K * s + i0) * ow + q;  // tap (a, b), row i0 + ii at m + (b*s + ii)*ow
    V acc[K][SI];
#pragma GCC unroll 8
    for (int b = 0; b < K; ++b)
#pragma GCC unroll 4
      for (int ii = 0; ii < SI; ++ii) acc[b][ii] = load<V, acc_t>(m + (b * s + ii) * ow);
    const acc_t* x = xbuf + a * uw + q;
    const scalar_t* d = grad + i0 * ow + q;
    for (int64_t cb = 0; cb < nb; ++cb, x += xstride, d += plane) {
      V dv[SI];
#pragma GCC unroll 4
      for (int ii = 0; ii < SI; ++ii) dv[ii] = load<V, acc_t>(d + ii * ow);
#pragma GCC unroll 8
      for (int b = 0; b < K; ++b) {
        V xv = load<V, acc_t>(x + b * s);
        keep_in_register(xv);
#pragma GCC unroll 4
        for (int ii = 0; ii < SI; ++ii) acc[b][ii] = acc[b][ii] + dv[ii] * xv;
      }
    }
#pragma GCC unroll 8
    for (int b = 0; b < K; ++b)
#pragma GCC unroll 4
      for (int ii = 0; ii < SI; ++ii) store<V, acc_t>(m + (b * s + ii) * ow, acc[b][ii]);
  }
}

// Where column q starts a cache line, asks for the line kGradPrefetchBytes ahead (if before row_len) in each of
// `rows` rows (row_stride apart) of `channels` channels (plane apart) of grad_output, which the gradients read in
// more rows at once (planes apart) than the hardware prefetcher follows (measured: 0.94x the mask gradient's time
// at 256 bytes ahead; 512: 1.0x, 1024: 1.05x).
template <typename T>
inline void prefetch_grad_rows(const T* first_row, int64_t plane, int64_t row_stride, int64_t channels, int64_t rows,
                               int64_t q, int64_t row_len) {
  constexpr int64_t kGradPrefetchBytes = 256, kLine = 64 / static_cast<int64_t>(sizeof(T));
  constexpr int64_t ahead = kGradPrefetchBytes / static_cast<int64_t>(sizeof(T));
  if (q % kLine != 0 || q + ahead >= row_len) return;
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t i = 0; i < rows; ++i) __builtin_prefetch(first_row + c * plane + i * row_stride + q + ahead);
}

template <int K, int SI, typename acc_t, typename scalar_t, typename Geo>
inline void kernel_grad_block_taps(acc_t* macc, const acc_t* xbuf, int64_t xstride, const scalar_t* grad,
                                   int64_t plane, int64_t nb, int64_t a0, int64_t a1, const Geo& geo) {
  using V = vec_t<acc_t>;
  constexpr int64_t L = lanes<V, acc_t>();
  for (int64_t i0 = 0; i0 < geo.s; i0 += SI) {
    int64_t q = 0;
    for (; q + L <= geo.ow; q += L) {
      prefetch_grad_rows(grad + i0 * geo.ow, plane, geo.ow, nb, SI, q, geo.ow);
      kernel_grad_columns_taps<K, SI, V>(macc, xbuf, xstride, grad, plane, nb, a0, a1, i0, q, geo);
    }
    for (; q < geo.ow; ++q)
      kernel_grad_columns_taps<K, SI, acc_t>(macc, xbuf, xstride, grad, plane, nb, a0, a1, i0, q, geo);
  }
}

// f(integral_constant K, integral_constant SI) for the kernel sizes the register-resident mask gradient is compiled
// for (K*SI accumulators + SI + 1 fit in 16 vector registers; SI divides s); false for other k.
template <typename F>
inline bool with_register_taps(int64_t k, int64_t s, F&& f) {
  if (k == 5) {
    if (s % 2 == 0) f(std::integral_constant<int, 5>{}, std::integral_constant<int, 2>{});
    else f(std::integral_constant<int, 5>{}, std::integral_constant<int, 1>{});
    return true;
  }
  if (k == 3) {
    if (s % 2 == 0) f(std::integral_constant<int, 3>{}, std::integral_constant<int, 2>{});
    else f(std::integral_constant<int, 3>{}, std::integral_constant<int, 1>{});
    return true;
  }
  return false;
}

// dL/dK of the output pixels of the low-res rows [y_first, y_first + units) of one (n, g): unit u's sums at
// maccs + u*k*k*s*OW, [t][i][q] = sum over `channels` channels, in channel order, of
// grad[c, (y_first + u)*s + i, q] * x[c, y_first + u + a - r, q/s + b - r] (CARAFE's mask_grad_element); taps a
// that read outside the map stay 0. grad: grad_output plane of the first channel + row y_first*s; feat: features
// plane of the first channel. Each channel block stages its feature rows once for all the units. Kernel sizes 3
// and 5 keep the sums in registers over blocks of kKernelGradChannels channels; others go through memory per tap.
template <typename scalar_t, typename acc_t, typename Geo>
void kernel_grad_rows(const scalar_t* grad, const scalar_t* feat, int64_t channels, int64_t y_first, int64_t units,
                      acc_t* maccs, acc_t* xbuf, const Geo& geo) {
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow, uw = (geo.w + 2 * r) * s;
  const int64_t plane = geo.oh * ow, src_plane = geo.h * geo.w, unit_kernels = geo.kk * s * ow;
  const int64_t xstride = staged_rows(units, k) * uw;
  const bool in_registers = with_register_taps(k, s, [](auto, auto) {});
  const int64_t block = in_registers ? kKernelGradChannels : kChannelBlock;
  for (int64_t t = 0; t < units * unit_kernels; ++t) maccs[t] = acc_t(0);
  for (int64_t c0 = 0; c0 < channels; c0 += block) {
    const int64_t nb = channels - c0 < block ? channels - c0 : block;
    stage_feature_rows(feat + c0 * src_plane, nb, y_first, units, xbuf, xstride, geo);
    for (int64_t u = 0; u < units; ++u) {
      const int64_t y0 = y_first + u, a0 = tap_begin(y0, r), a1 = tap_end(y0, r, k, geo.h);
      acc_t* macc = maccs + u * unit_kernels;
      const acc_t* xrows = xbuf + u * uw;
      const scalar_t* grad_block = grad + c0 * plane + u * s * ow;
      if (in_registers) {
        with_register_taps(k, s, [&](auto kc, auto sic) {
          kernel_grad_block_taps<decltype(kc)::value, decltype(sic)::value>(macc, xrows, xstride, grad_block, plane,
                                                                            nb, a0, a1, geo);
        });
      } else {
        for_sub_blocks(nb, [&](auto nbc, int64_t first) {
          kernel_grad_block<decltype(nbc)::value>(macc, xrows + first * xstride, xstride, grad_block + first * plane,
                                                  plane, a0, a1, geo);
        });
      }
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
UPSAMPLE_PLUGIN_NOINLINE void feature_grad_columns(const acc_t* kpad, const GradRows<T>& rows, acc_t* tbuf,
                                                   int64_t a0, int64_t a1, int64_t u, const Geo& geo) {
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
  for (; u + L <= u1; u += L) {
    for (int64_t a = a0; a < a1; ++a)  // NB * s rows per tap row: too many streams for the hardware prefetcher
      prefetch_grad_rows(rows.base + a * rows.a_stride - rows.q_first, rows.cb_stride, rows.i_stride, NB, geo.s, u,
                         u1);
    feature_grad_columns<NB, V>(kpad, rows, tbuf, a0, a1, u, geo);
  }
  for (; u < u1; ++u) feature_grad_columns<NB, acc_t>(kpad, rows, tbuf, a0, a1, u, geo);
}

template <typename acc_t, typename T, typename Geo>
inline void feature_grad_region_channels(const acc_t* kpad, const GradRows<T>& rows, acc_t* tbuf, int64_t nb,
                                         int64_t u0, int64_t u1, int64_t a0, int64_t a1, const Geo& geo) {
  for_sub_blocks(nb, [&](auto nbc, int64_t first) {
    GradRows<T> sub = rows;
    sub.base += first * rows.cb_stride;
    feature_grad_region<decltype(nbc)::value>(kpad, sub, tbuf + first * geo.ow, u0, u1, a0, a1, geo);
  });
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
      if (s == 2) {  // a constant stride the compiler vectorises
        for (int64_t x = 0; x < geo.w; ++x) d[x] = static_cast<scalar_t>((acc_t(0) + t[2 * x]) + t[2 * x + 1]);
      } else {
        for (int64_t x = 0; x < geo.w; ++x) {
          acc_t v = acc_t(0);
          for (int64_t j = 0; j < s; ++j) v += t[x * s + j];
          d[x] = static_cast<scalar_t>(v);
        }
      }
    }
  }
}
