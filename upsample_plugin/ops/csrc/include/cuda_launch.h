// Launch configuration shared by the CUDA kernels (cuda/*.cu): one thread per output value in grid-stride loops.
#pragma once

#include <algorithm>
#include <cstdint>

namespace upsample_plugin {
namespace cuda {

constexpr int kThreads = 256;

// Blocks for `total` values, capped: the grid-stride loops cover the rest.
inline unsigned int blocks_for(int64_t total) {
  const int64_t max_blocks = int64_t{1} << 16;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, max_blocks);
  return static_cast<unsigned int>(std::max<int64_t>(1, blocks));
}

}  // namespace cuda
}  // namespace upsample_plugin
