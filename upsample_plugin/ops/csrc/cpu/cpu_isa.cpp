// CPU instruction-set detection and override for the kernels' hot loops (include/cpu_isa.h), and the op
// upsample_plugin::_cpu_isa(str isa) -> str that reads ('' ) or sets it from Python.
#include <atomic>
#include <cstdlib>
#include <string>

#include <c10/util/Exception.h>
#include <torch/library.h>

#include "cpu_isa.h"

namespace upsample_plugin {
namespace cpu {
namespace {

Isa detect() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // The AVX-512 build uses F, BW, VL and DQ (what gcc's vector code for float/double may emit); libgcc's checks
  // include the OS's support for the vector registers (XGETBV).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2")) return Isa::avx2;
#endif
  return Isa::base;
}

Isa parse(const std::string& name, const char* source) {
  for (Isa isa : {Isa::base, Isa::avx2, Isa::avx512})
    if (name == isa_name(isa)) {
      TORCH_CHECK(static_cast<int>(isa) <= static_cast<int>(supported_isa()), source, "=", name,
                  ": this CPU supports up to ", isa_name(supported_isa()), " (choose base, avx2 or avx512)");
      return isa;
    }
  TORCH_CHECK(false, source, " must be one of base, avx2, avx512; got '", name, "'");
  return Isa::base;
}

constexpr int kUnset = -1;
std::atomic<int> g_active{kUnset};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "base";
  }
}

Isa supported_isa() {
  static const Isa isa = detect();
  return isa;
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v == kUnset) {
    const char* env = std::getenv("UPSAMPLE_PLUGIN_CPU_ISA");
    const Isa isa = (env != nullptr && env[0] != '\0') ? parse(env, "UPSAMPLE_PLUGIN_CPU_ISA") : supported_isa();
    v = static_cast<int>(isa);
    g_active.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

namespace {

// '' -> the active instruction set; a name -> set it (an unsupported one raises) and return the previous one.
std::string cpu_isa_op(c10::string_view requested) {
  const Isa previous = active_isa();
  if (!requested.empty()) {
    g_active.store(static_cast<int>(parse(std::string(requested), "isa")), std::memory_order_relaxed);
  }
  return isa_name(previous);
}

}  // namespace
}  // namespace cpu
}  // namespace upsample_plugin

TORCH_LIBRARY_FRAGMENT(upsample_plugin, m) {
  // The CPU kernels' instruction set (include/cpu_isa.h): '' reads it, 'base' | 'avx2' | 'avx512' sets it.
  // Returns the instruction set active before the call.
  m.def("_cpu_isa(str isa) -> str", &upsample_plugin::cpu::cpu_isa_op);
}
