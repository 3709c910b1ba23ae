// Per-unit loops of the fused DLU on the CPU (cpu/dlu_cpu.cpp) besides CARAFE's: kernel sampling and offset
// gradients. cpu/dlu_cpu.cpp stages the sampled kernels with these, then runs CARAFE's hot loops
// (include/cpu_reassembly_loops.h) on them as separate calls (inlined into one function here they spilled
// registers and ran ~20% slower). Per-instruction-set header (include/cpu_isa_instantiate.h): no include guard;
// it includes only the guard-less per-ISA loop header below, which is re-read with it for every instruction set.
// It uses, from its includer's namespace (upsample_plugin::dlu), Geometry and axis_position
// (include/dlu_common.h) and PixelSample (cpu/dlu_cpu.cpp).
//
// A sampled kernel value is sample_tap's (include/dlu_common.h) bit for bit: the same corner weights
// (ey*ex, ey*wx, wy*ex, wy*wx) and the same chain of exactly rounded fused multiply-adds, fma(v11, w11,
// fma(v10, w10, fma(v01, w01, v00*w00))), which sample_tap writes on the host to match ATen's grid_sample. An
// FMA is exactly rounded whoever computes it, so the builds agree: the baseline build calls libm's fma, the
// AVX2 and AVX-512 builds use the FMA instruction (below; the caller runs them only on CPUs with FMA). Nothing
// else is fused (-ffp-contract=off). The offset gradient is sample_tap_position_grad's expression, the sample
// point sample_point's (sample_position + set_cell) arithmetic.
//
// The sample points of a row of output pixels are computed once (sample_row, without sample_point's divisions)
// and shared by all the taps that use them; the per-tap work is 4 loads and 4 exactly rounded operations.
#include "cpu_reassembly_loops.h"

// Which read of this header this is (1: isa_base, 2: isa_avx2, 3: isa_avx512; cpu_isa_instantiate.h's order).
// The AVX2 and AVX-512 builds of the loops below may use the FMA instruction: every AVX2 CPU the kernels run
// the AVX2 build on has it (dlu_cpu.cpp checks), and gcc's avx512f implies it.
#if !defined(UPSAMPLE_PLUGIN_DLU_LOOPS_PASS)
#define UPSAMPLE_PLUGIN_DLU_LOOPS_PASS 1
static_assert(kVecBytes == 16, "cpu_dlu_loops.h: the first build must be the baseline one");
#elif UPSAMPLE_PLUGIN_DLU_LOOPS_PASS == 1
#undef UPSAMPLE_PLUGIN_DLU_LOOPS_PASS
#define UPSAMPLE_PLUGIN_DLU_LOOPS_PASS 2
static_assert(kVecBytes == 32, "cpu_dlu_loops.h: the second build must be the AVX2 one");
#pragma GCC target("fma")
#else
#undef UPSAMPLE_PLUGIN_DLU_LOOPS_PASS
#define UPSAMPLE_PLUGIN_DLU_LOOPS_PASS 3
static_assert(kVecBytes == 64, "cpu_dlu_loops.h: the third build must be the AVX-512 one");
#pragma GCC target("fma")
#endif

// The exactly rounded a*b + c (hardware FMA where this build has it, else libm).
inline float exact_fma(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
inline double exact_fma(double a, double b, double c) { return __builtin_fma(a, b, c); }

// out[q] = the sample point of output pixel (p, q) of group g, q < OW: sample_position + set_cell of
// dlu_common.h (sample_point), with the same arithmetic. off_n: offsets + n*G*2*s*s*H*W.
template <typename scalar_t, typename acc_t>
inline void sample_row(const scalar_t* off_n, int64_t g, int64_t p, PixelSample<acc_t>* out, const Geometry& geo) {
  const int64_t s = geo.s, ss = s * s, h = p / s, i = p % s, plane = geo.h * geo.w;
  const scalar_t* offx = off_n + ((g * 2) * ss + i * s) * plane + h * geo.w;  // + j*plane + column
  const scalar_t* offy = off_n + ((g * 2 + 1) * ss + i * s) * plane + h * geo.w;
  for (int64_t j = 0; j < s; ++j) {
    for (int64_t w = 0; w < geo.w; ++w) {
      PixelSample<acc_t>& sp = out[w * s + j];
      const acc_t dx = static_cast<acc_t>(offx[j * plane + w]);
      const acc_t dy = static_cast<acc_t>(offy[j * plane + w]);
      const acc_t x = axis_position<acc_t>(static_cast<acc_t>(w) + dx, geo.w, &sp.gx);
      const acc_t y = axis_position<acc_t>(static_cast<acc_t>(h) + dy, geo.h, &sp.gy);
      const int64_t x0 = static_cast<int64_t>(x), y0 = static_cast<int64_t>(y);  // x, y >= 0: floor
      sp.wx = x - static_cast<acc_t>(x0);
      sp.wy = y - static_cast<acc_t>(y0);
      sp.i00 = y0 * geo.w + x0;
      sp.dx = x0 + 1 < geo.w ? 1 : 0;
      sp.dy = y0 + 1 < geo.h ? static_cast<int32_t>(geo.w) : 0;
    }
  }
}

// dst[(t - t0)*tstride + q] = K'_t of pixel q (sample point sp[q]) for taps t in [t0, t1), q < n: sample_tap.
// ks: kernel_space + (n*G + g)*k*k*H*W.
template <typename scalar_t, typename acc_t>
inline void sample_taps(const scalar_t* ks, int64_t plane, const PixelSample<acc_t>* sp, int64_t n, int64_t t0,
                        int64_t t1, acc_t* dst, int64_t tstride) {
  for (int64_t q = 0; q < n; ++q) {
    const PixelSample<acc_t> pt = sp[q];
    const acc_t ex = acc_t(1) - pt.wx, ey = acc_t(1) - pt.wy;
    const acc_t w00 = ey * ex, w01 = ey * pt.wx, w10 = pt.wy * ex, w11 = pt.wy * pt.wx;
    const scalar_t* c = ks + t0 * plane + pt.i00;
    acc_t* d = dst + q;
    for (int64_t t = t0; t < t1; ++t, c += plane, d += tstride) {
      const acc_t v00 = static_cast<acc_t>(c[0]), v01 = static_cast<acc_t>(c[pt.dx]);
      const acc_t v10 = static_cast<acc_t>(c[pt.dy]), v11 = static_cast<acc_t>(c[pt.dy + pt.dx]);
      *d = exact_fma(v11, w11, exact_fma(v10, w10, exact_fma(v01, w01, v00 * w00)));
    }
  }
}

// ---- forward ---------------------------------------------------------------------------------------------------

// kbuf ([t][i][q], reassemble_rows' layout per unit) = the sampled kernels of the s output rows of low-res row y0 of
// one (n, g), taps a in [a0, a1) (tap_begin/end). ks_ng: kernel_space + (n*G + g)*k*k*H*W; off_n: offsets +
// n*G*2*s*s*H*W. Scratch: samp OW.
template <typename scalar_t, typename acc_t>
void sample_forward_kernels(const scalar_t* ks_ng, const scalar_t* off_n, int64_t g, int64_t y0, int64_t a0,
                            int64_t a1, acc_t* kbuf, PixelSample<acc_t>* samp, const Geometry& geo) {
  const int64_t k = geo.k, s = geo.s, ow = geo.ow, plane = geo.h * geo.w;
  for (int64_t i = 0; i < s; ++i) {
    sample_row(off_n, g, y0 * s + i, samp, geo);
    sample_taps(ks_ng, plane, samp, ow, a0 * k, a1 * k, kbuf + (a0 * k * s + i) * ow, s * ow);
  }
}

// ---- feature gradient ------------------------------------------------------------------------------------------

// kpad ([t][i][u], feature_grad_unit's layout: r*s zero columns each side, written once by the caller) = the
// kernels of the output rows that read low-res row y0 of one (n, g): tap row a, a in [a0, a1)
// (gather_tap_begin/end), of the s output rows with parent row y0 - a + r. The sample points of a parent row's
// s output rows are kept in a ring of k rows (slot = parent row % k, ring_tag[slot] = ng*H + parent row, -1:
// empty), so consecutive units of a thread compute each row's sample points once. Scratch: ring k*s*OW,
// ring_tag k.
template <typename scalar_t, typename acc_t>
void sample_feature_grad_kernels(const scalar_t* ks_ng, const scalar_t* off_n, int64_t g, int64_t ng, int64_t y0,
                                 int64_t a0, int64_t a1, acc_t* kpad, PixelSample<acc_t>* ring, int64_t* ring_tag,
                                 const Geometry& geo) {
  const int64_t k = geo.k, s = geo.s, r = geo.r, ow = geo.ow, plane = geo.h * geo.w, pw = ow + 2 * r * s;
  for (int64_t a = a0; a < a1; ++a) {
    const int64_t parent = y0 - a + r, slot = parent % k, tag = ng * geo.h + parent;
    PixelSample<acc_t>* rows = ring + slot * s * ow;
    if (ring_tag[slot] != tag) {
      for (int64_t i = 0; i < s; ++i) sample_row(off_n, g, parent * s + i, rows + i * ow, geo);
      ring_tag[slot] = tag;
    }
    for (int64_t i = 0; i < s; ++i)
      sample_taps(ks_ng, plane, rows + i * ow, ow, a * k, a * k + k, kpad + (a * k * s + i) * pw + r * s, s * pw);
  }
}

// ---- offset gradient -------------------------------------------------------------------------------------------

// The sample points of the s output rows of low-res row y0 of one (n, g) into samp ([i][q], kept for the
// kernel-space scatter), and their offset gradients into goff_n (offsets layout): per pixel, the sum over taps
// in tap order of dK'_t * dK'_t/d(position) (sample_tap_position_grad), times the clamp gradient. macc: the
// rows' dK' ([t][i][q], kernel_grad_rows'); goff_n: grad_offsets + n*G*2*s*s*H*W.
template <typename scalar_t, typename acc_t>
void offset_grad_rows(const acc_t* macc, const scalar_t* ks_ng, const scalar_t* off_n, int64_t g, int64_t y0,
                      PixelSample<acc_t>* samp, scalar_t* goff_n, const Geometry& geo) {
  const int64_t s = geo.s, ow = geo.ow, kk = geo.kk, ss = s * s, plane = geo.h * geo.w;
  for (int64_t i = 0; i < s; ++i) {
    PixelSample<acc_t>* row = samp + i * ow;
    sample_row(off_n, g, y0 * s + i, row, geo);
    for (int64_t w = 0; w < geo.w; ++w) {
      for (int64_t j = 0; j < s; ++j) {
        const int64_t q = w * s + j;
        const PixelSample<acc_t> pt = row[q];
        const acc_t ex = acc_t(1) - pt.wx, ey = acc_t(1) - pt.wy;
        const scalar_t* c = ks_ng + pt.i00;
        const acc_t* d = macc + i * ow + q;
        acc_t dx = acc_t(0), dy = acc_t(0);
        for (int64_t t = 0; t < kk; ++t, c += plane, d += s * ow) {
          const acc_t v00 = static_cast<acc_t>(c[0]), v01 = static_cast<acc_t>(c[pt.dx]);
          const acc_t v10 = static_cast<acc_t>(c[pt.dy]), v11 = static_cast<acc_t>(c[pt.dy + pt.dx]);
          dx += *d * (ey * (v01 - v00) + pt.wy * (v11 - v10));
          dy += *d * (ex * (v10 - v00) + pt.wx * (v11 - v01));
        }
        const int64_t sub = i * s + j, pix = y0 * geo.w + w;
        goff_n[((g * 2) * ss + sub) * plane + pix] = static_cast<scalar_t>(dx * pt.gx);
        goff_n[((g * 2 + 1) * ss + sub) * plane + pix] = static_cast<scalar_t>(dy * pt.gy);
      }
    }
  }
}
