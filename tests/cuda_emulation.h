// CPU emulation of the CUDA runtime pieces the plugin's kernels use (upsample_plugin/ops/csrc/cuda/*.cu), so the
// unmodified kernels and their host launch code run on CPU tensors in the test suite (tests/cuda_emulation.py
// transforms the sources mechanically; tests/test_cuda_emulation.py runs them).
//
// * __global__/__device__/__host__/__forceinline__ compile away; blockIdx/threadIdx/blockDim/gridDim are
//   thread-local variables set by the launcher.
// * launch(grid, block, smem, stream, kernel, args...) replaces kernel<<<grid, block, smem, stream>>>(args): it
//   checks CUDA's launch limits (what cudaLaunchKernel rejects with "invalid configuration argument"), that a
//   CUDAGuard is alive and that the stream is the current one, then runs every thread of every block, one after
//   the other. That is exact for kernels without shared memory, __syncthreads or atomics (the plugin's kernels use
//   none: every output value has one writer).
// * Config (set_config): cap the grid at `max_blocks` blocks (the launcher shrinks gridDim, so the grid-stride
//   loops must cover the rest) and run the (block, thread) pairs in order, reversed or shuffled: a kernel whose
//   result depends on either is wrong on a GPU.
// * The current stream is a non-default stream, so a launch on the default stream (0) or on a stale stream fails.
// * __fmul_rn and friends: correctly rounded, never contracted into an FMA (an empty asm statement hides the
//   product from the compiler), as on the device.
// * Outputs: the transform turns at::empty into empty_poisoned (NaN for floats, a sentinel for integers), so a
//   value no thread writes fails the comparisons.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/Device.h>
#include <c10/util/Exception.h>

// The shared headers' device code paths (common.h: UPSAMPLE_PLUGIN_DEVICE_CODE) are the ones to emulate.
#define UPSAMPLE_PLUGIN_EMULATE_CUDA 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
};

inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace cuda_emulation {

// Launch order of the (block, thread) pairs.
enum Order : int64_t { kInOrder = 0, kReversed = 1, kShuffled = 2 };

struct State {
  int64_t max_blocks = 0;  // 0: the grid as launched
  int64_t order = kInOrder;
  int64_t seed = 0;
  int64_t launches = 0;    // kernels launched so far (tests check that the kernels ran)
  int guards = 0;          // live CUDAGuards of this thread
  cudaStream_t current = reinterpret_cast<cudaStream_t>(std::uintptr_t{0x5157});  // not the default stream (0)
};

inline State& state() {
  static thread_local State s;
  return s;
}

// Rounded arithmetic without contraction: the asm statement makes the compiler treat the result as unknown,
// so `__fmul_rn(a, b) + c` cannot become fma(a, b, c) even under -ffp-contract=fast.
template <typename T>
inline T opaque(T v) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("" : "+x"(v));
#elif defined(__aarch64__)
  asm volatile("" : "+w"(v));
#else
  volatile T copy = v;
  v = copy;
#endif
  return v;
}

template <typename... Params, typename... Args>
void launch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const char* name, void (*kernel)(Params...),
            Args&&... args) {
  State& st = state();
  // cudaLaunchKernel's limits (compute capability >= 3.0).
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  TORCH_CHECK(block.x >= 1 && block.y >= 1 && block.z >= 1 && threads <= 1024 && block.z <= 64, name,
              ": invalid block (", block.x, ", ", block.y, ", ", block.z, "): at most 1024 threads, z <= 64");
  TORCH_CHECK(grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.x <= 2147483647u && grid.y <= 65535 &&
                  grid.z <= 65535,
              name, ": invalid grid (", grid.x, ", ", grid.y, ", ", grid.z, ")");
  TORCH_CHECK(smem <= 48 * 1024, name, ": ", smem, " bytes of dynamic shared memory exceed the 48 KiB default");
  TORCH_CHECK(smem == 0, name, ": the emulation runs threads one by one, so it has no shared memory");
  TORCH_CHECK(st.guards > 0, name, ": launched without a device guard (c10::cuda::CUDAGuard)");
  TORCH_CHECK(stream == st.current, name, ": launched on stream ", static_cast<const void*>(stream),
              ", not on the current stream ", static_cast<const void*>(st.current));
  TORCH_CHECK(grid.y == 1 && grid.z == 1 && block.y == 1 && block.z == 1, name,
              ": the emulation runs 1-D launches only");
  ++st.launches;
  const std::tuple<Params...> params(std::forward<Args>(args)...);  // kernel arguments are copied, as by CUDA
  const dim3 run_grid(st.max_blocks > 0 ? std::min<uint64_t>(grid.x, st.max_blocks) : grid.x);
  const uint64_t total = uint64_t{run_grid.x} * block.x;
  std::vector<uint64_t> order(total);
  for (uint64_t i = 0; i < total; ++i) order[i] = i;
  if (st.order == kReversed) std::reverse(order.begin(), order.end());
  if (st.order == kShuffled) {
    std::mt19937_64 rng(static_cast<uint64_t>(st.seed) + st.launches);
    std::shuffle(order.begin(), order.end(), rng);
  }
  gridDim = run_grid;
  blockDim = block;
  for (const uint64_t i : order) {
    blockIdx = uint3{static_cast<unsigned int>(i / block.x), 0, 0};
    threadIdx = uint3{static_cast<unsigned int>(i % block.x), 0, 0};
    std::apply(kernel, params);
  }
}

// at::empty whose values are poison: NaN for floating types, a large sentinel for integers.
inline at::Tensor empty_poisoned(at::IntArrayRef size, const at::TensorOptions& options) {
  at::Tensor t = at::empty(size, options);
  if (at::isFloatingType(t.scalar_type())) {
    t.fill_(std::numeric_limits<double>::quiet_NaN());
  } else {
    t.fill_(int64_t{0x7eadbeef});
  }
  return t;
}

}  // namespace cuda_emulation

// The c10::cuda names the kernels' host code uses.
namespace c10 {
namespace cuda {

class CUDAGuard {
 public:
  explicit CUDAGuard(c10::Device device) : device_(device) { ++::cuda_emulation::state().guards; }
  CUDAGuard(const CUDAGuard&) = delete;
  CUDAGuard& operator=(const CUDAGuard&) = delete;
  ~CUDAGuard() { --::cuda_emulation::state().guards; }

 private:
  c10::Device device_;
};

class CUDAStream {
 public:
  explicit CUDAStream(cudaStream_t s) : stream_(s) {}
  operator cudaStream_t() const { return stream_; }
  cudaStream_t stream() const { return stream_; }

 private:
  cudaStream_t stream_;
};

inline CUDAStream getCurrentCUDAStream(c10::DeviceIndex = -1) { return CUDAStream(::cuda_emulation::state().current); }

}  // namespace cuda
}  // namespace c10

// The launcher throws at the launch itself; there is no asynchronous error to fetch.
#define C10_CUDA_KERNEL_LAUNCH_CHECK() \
  do {                                 \
  } while (0)

// Device intrinsics: correctly rounded single operations, not contractible (see opaque).
inline float __fmul_rn(float a, float b) { return cuda_emulation::opaque(a * b); }
inline float __fadd_rn(float a, float b) { return cuda_emulation::opaque(a + b); }
inline float __fsub_rn(float a, float b) { return cuda_emulation::opaque(a - b); }
inline double __dmul_rn(double a, double b) { return cuda_emulation::opaque(a * b); }
inline double __dadd_rn(double a, double b) { return cuda_emulation::opaque(a + b); }
inline double __dsub_rn(double a, double b) { return cuda_emulation::opaque(a - b); }
