// Output allocation of the CPU kernels. Host only.
#pragma once

#include <cstdint>

#include <ATen/ops/empty.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace upsample_plugin {
namespace cpu {

// at::empty(sizes, options), with the 2 MB-aligned part of a large buffer advised as transparent huge pages
// (Linux, before anything touches it). A fresh output of tens of MB otherwise costs one page fault and one
// kernel zero-fill per 4 KB page on first write: measured on the project's 2-core EPYC, allocating and first
// writing 59 MB took ~27 ms with 4 KB pages and ~5.5 ms advised (a write into touched memory: ~2.3 ms), i.e.
// about as long as the whole CARAFE forward (1x256x120x120, x2) takes with the advice. This is c10's
// THP_MEM_ALLOC_ENABLE=1, for the kernels' own outputs only;
// where THP is off ('never') the advice is a no-op.
inline at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t last = (begin + t.nbytes()) & ~(kHugePage - 1);
  if (last > first && last - first >= 2 * kHugePage) {
    madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);  // advice only: failure is harmless
  }
#endif
  return t;
}

}  // namespace cpu
}  // namespace upsample_plugin
