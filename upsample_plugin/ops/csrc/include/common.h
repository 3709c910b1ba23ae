// Shared by every op of upsample_plugin._C: the HOST_DEVICE macro for per-element functions that both the CPU
// (.cpp, gcc) and the CUDA (.cu, nvcc) kernels compile, and host-only argument checks that raise a
// c10::Error (RuntimeError in Python) naming the argument and the expected shape.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define HOST_DEVICE __host__ __device__ __forceinline__
#else
#define HOST_DEVICE inline
#endif

// Full unrolling of the fixed-size tap loops of the CUDA kernels (K a template parameter), so the per-pixel
// kernels and accumulators stay in registers; a no-op for host compilers.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define UPSAMPLE_PLUGIN_UNROLL _Pragma("unroll")
#else
#define UPSAMPLE_PLUGIN_UNROLL
#endif

// Device code paths of the shared per-element functions: nvcc's device pass, or the CPU emulation of the CUDA
// kernels in the tests (tests/cuda_emulation.h), which compiles the .cu files as C++ and must run what a GPU runs.
#if defined(__CUDA_ARCH__) || defined(UPSAMPLE_PLUGIN_EMULATE_CUDA)
#define UPSAMPLE_PLUGIN_DEVICE_CODE 1
#endif

namespace upsample_plugin {

// Separately rounded arithmetic that no compiler contracts into a fused multiply-add. Where a value decides a
// discrete choice (DLU's bilinear cell at an integer sample position), `a * b - c` must round like the
// references, which round every operation: nvcc contracts it into one FMA by default (--fmad=true), and a 1-ulp
// different position picks the neighbouring cell. Device: CUDA's _rn intrinsics, which nvcc never contracts.
// Host: plain operators; setup.py compiles the CPU kernels with -ffp-contract=off.
HOST_DEVICE float mul_rn(float a, float b) {
#if defined(UPSAMPLE_PLUGIN_DEVICE_CODE)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
HOST_DEVICE double mul_rn(double a, double b) {
#if defined(UPSAMPLE_PLUGIN_DEVICE_CODE)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
HOST_DEVICE float sub_rn(float a, float b) {
#if defined(UPSAMPLE_PLUGIN_DEVICE_CODE)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
HOST_DEVICE double sub_rn(double a, double b) {
#if defined(UPSAMPLE_PLUGIN_DEVICE_CODE)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
HOST_DEVICE float add_rn(float a, float b) {
#if defined(UPSAMPLE_PLUGIN_DEVICE_CODE)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
HOST_DEVICE double add_rn(double a, double b) {
#if defined(UPSAMPLE_PLUGIN_DEVICE_CODE)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// The dtypes every kernel accepts (AT_DISPATCH_FLOATING_TYPES_AND2(Half, BFloat16, ...)).
inline bool is_kernel_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// `name` must be a defined 4-D float16/bfloat16/float32/float64 tensor; `layout` names its dimensions.
inline void check_4d_float(const at::Tensor& t, const char* name, const char* layout) {
  TORCH_CHECK(t.defined(), name, " must be a tensor of shape ", layout, ", got an undefined tensor");
  TORCH_CHECK(t.dim() == 4, name, " must be 4-D ", layout, ", got shape ", t.sizes());
  TORCH_CHECK(is_kernel_dtype(t.scalar_type()), name,
              " must be float16, bfloat16, float32 or float64, got ", t.scalar_type());
}

// `b` must share `a`'s device and dtype.
inline void check_same_device_dtype(const at::Tensor& a, const char* name_a, const at::Tensor& b,
                                    const char* name_b) {
  TORCH_CHECK(a.device() == b.device(), name_b, " is on ", b.device(), " but ", name_a, " is on ", a.device(),
              "; put both on one device");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), name_b, " has dtype ", b.scalar_type(), " but ", name_a,
              " has ", a.scalar_type(), "; cast one to the other");
}

// `t` must have exactly the sizes `expected`, which `layout` spells out in terms of the features' shape.
inline void check_shape(const at::Tensor& t, const char* name, const char* layout, const std::vector<int64_t>& expected,
                        const at::Tensor& features) {
  TORCH_CHECK(t.sizes() == at::IntArrayRef(expected), name, " must have shape ", layout, " = ",
              at::IntArrayRef(expected), " for features of shape ", features.sizes(), ", got ", t.sizes());
}

// The backward ops' incoming gradient: a 4-D tensor like `features` (device, dtype) of the output's sizes.
inline void check_grad_output(const at::Tensor& grad_output, const at::Tensor& features, const char* layout,
                              const std::vector<int64_t>& expected) {
  check_4d_float(grad_output, "grad_output", layout);
  check_same_device_dtype(features, "features", grad_output, "grad_output");
  check_shape(grad_output, "grad_output", layout, expected, features);
}

inline void check_device_type(const at::Tensor& t, const char* name, c10::DeviceType type) {
  TORCH_CHECK(t.device().type() == type, name, " must be a ", c10::DeviceTypeName(type), " tensor here, got ",
              t.device());
}

}  // namespace upsample_plugin
