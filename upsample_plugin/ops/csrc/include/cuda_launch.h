// Launch configuration and index arithmetic shared by the CUDA kernels (cuda/*.cu): grid-stride loops over work
// items (an output value, or an output pixel with its k*k taps in registers).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common.h"

namespace upsample_plugin {
namespace cuda {

constexpr int kThreads = 256;

// Blocks for `total` work items, capped: the grid-stride loops cover the rest.
inline unsigned int blocks_for(int64_t total) {
  const int64_t max_blocks = int64_t{1} << 16;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, max_blocks);
  return static_cast<unsigned int>(std::max<int64_t>(1, blocks));
}

// a / b and a % b for a >= 0, b > 0, in 32-bit arithmetic when both fit: a 64-bit division is a long
// instruction sequence on the GPU, a 32-bit one a few instructions. The kernels decompose their work index with
// these once per work item (then walk channels and taps by pointer increments).
struct DivMod {
  int64_t quot, rem;
};
HOST_DEVICE DivMod divmod(int64_t a, int64_t b) {
  if (((a | b) >> 31) == 0) {
    const uint32_t ua = static_cast<uint32_t>(a), ub = static_cast<uint32_t>(b), uq = ua / ub;
    return {static_cast<int64_t>(uq), static_cast<int64_t>(ua - uq * ub)};
  }
  const int64_t q = a / b;
  return {q, a - q * b};
}

// The kernel sizes whose CUDA kernels keep a pixel's k*k taps in registers (loops unrolled at compile time): the
// ones the upsamplers use, CARAFE's and DLU's k_up = 5 and DDF's (and CARAFE's encoder's) 3. Calls
// f(std::integral_constant<int, K>{}) with K = k for those, K = 0 otherwise (the generic one-thread-per-value
// kernels). Each size is one more instantiation of every per-pixel kernel for 4 dtypes (nvcc time).
template <typename F>
void dispatch_kernel_size(int64_t k, F&& f) {
  switch (k) {
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    default: f(std::integral_constant<int, 0>{}); break;
  }
}

// Channels per work item of the per-pixel kernels: a pixel's taps are read once per chunk; more chunks give the
// GPU more threads on small maps with many channels (FPN's coarse levels).
constexpr int64_t kChannelChunk = 32;

}  // namespace cuda
}  // namespace upsample_plugin
