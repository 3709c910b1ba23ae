// Compiles an op's hot loops once per instruction set (include/cpu_isa.h). No include guard: a CPU kernel file
// defines UPSAMPLE_PLUGIN_ISA_KERNELS as the name of its loop header and includes this file once, inside its own
// namespace and after all its other #includes. The loop header must itself include nothing (everything it uses
// is included before) and have no include guard: it is read three times, into the namespaces
//   isa_base   (kVecBytes 16: the baseline x86-64 / any CPU),
//   isa_avx2   (kVecBytes 32, compiled with target("avx2")),
//   isa_avx512 (kVecBytes 64, compiled with target("avx512f,avx512bw,avx512vl,avx512dq")),
// each with its own vector types (cpu_simd.h), so the three builds are distinct functions and none of them leaks
// into code that runs on a CPU without its instructions. UPSAMPLE_PLUGIN_CALL_ISA picks one at run time.
// Only gcc on x86 gets the extra builds; elsewhere isa_avx2 and isa_avx512 are the baseline build.
#ifndef UPSAMPLE_PLUGIN_ISA_KERNELS
#error "define UPSAMPLE_PLUGIN_ISA_KERNELS (the loop header to compile per instruction set) first"
#endif

namespace isa_base {
constexpr int kVecBytes = 16;
#include "cpu_simd.h"
#include UPSAMPLE_PLUGIN_ISA_KERNELS
}  // namespace isa_base

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx2")
namespace isa_avx2 {
constexpr int kVecBytes = 32;
#include "cpu_simd.h"
#include UPSAMPLE_PLUGIN_ISA_KERNELS
}  // namespace isa_avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq")
namespace isa_avx512 {
constexpr int kVecBytes = 64;
#include "cpu_simd.h"
#include UPSAMPLE_PLUGIN_ISA_KERNELS
}  // namespace isa_avx512
#pragma GCC pop_options
#else
namespace isa_avx2 = isa_base;
namespace isa_avx512 = isa_base;
#endif

#undef UPSAMPLE_PLUGIN_ISA_KERNELS
