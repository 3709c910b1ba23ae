// Row helpers of the CPU kernels' orchestration (cpu/carafe_cpu.cpp, dlu_cpu.cpp, ddf_cpu.cpp), compiled for the
// baseline instruction set: staging rows in the accumulation type, and the parallel grain. The hot loops live in
// the per-instruction-set headers (cpu_reassembly_loops.h, cpu_dlu_loops.h, cpu_ddf_loops.h). Host only.
#pragma once

#include <algorithm>
#include <cstdint>

namespace upsample_plugin {
namespace cpu {

template <typename scalar_t, typename acc_t>
inline void load_row(const scalar_t* __restrict__ src, acc_t* __restrict__ dst, int64_t len) {
  for (int64_t i = 0; i < len; ++i) dst[i] = static_cast<acc_t>(src[i]);
}

template <typename scalar_t, typename acc_t>
inline void store_row(const acc_t* __restrict__ src, scalar_t* __restrict__ dst, int64_t len) {
  for (int64_t i = 0; i < len; ++i) dst[i] = static_cast<scalar_t>(src[i]);
}

// Work units per at::parallel_for chunk: about 64k multiply-adds.
inline int64_t grain(int64_t work_per_unit) {
  return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, work_per_unit));
}

// Work of one at::parallel_for index of the CARAFE-style loops: `units` consecutive low-res rows from y_first of
// map ng = n*G + g (cpu_reassembly_loops.h: reassemble_rows, kernel_grad_rows).
struct RowChunk {
  int64_t ng, y_first, units;
};

// Number of chunks of up to rows_per_call rows over the n*G maps of H rows, and chunk `index`.
template <typename Geo>
inline int64_t row_chunks(const Geo& geo, int64_t rows_per_call) {
  return geo.n * geo.groups * ((geo.h + rows_per_call - 1) / rows_per_call);
}
template <typename Geo>
inline RowChunk row_chunk(int64_t index, const Geo& geo, int64_t rows_per_call) {
  const int64_t per_map = (geo.h + rows_per_call - 1) / rows_per_call;
  const int64_t y_first = index % per_map * rows_per_call;
  return {index / per_map, y_first, std::min(rows_per_call, geo.h - y_first)};
}

}  // namespace cpu
}  // namespace upsample_plugin
