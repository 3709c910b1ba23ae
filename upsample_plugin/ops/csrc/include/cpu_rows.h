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

}  // namespace cpu
}  // namespace upsample_plugin
