// Runtime choice of the instruction set the CPU kernels' hot loops run with (issue 17), the way ATen picks its
// CPU_CAPABILITY: the extension is compiled for baseline x86-64 (what every user's CPU runs), and the loops of
// each op are compiled three more times, with AVX2 and with AVX-512 enabled (include/cpu_isa_instantiate.h);
// the op calls the build of the best instruction set this CPU (and its OS) supports.
//
// Every build computes the same per-element sums in the same order, and no build fuses a multiply and an add
// (setup.py: -ffp-contract=off; the vector code multiplies and adds separately), so all of them give bitwise
// identical results: a vector lane is one output element's scalar sum. The tests run every build the CPU
// supports against the baseline one (tests/test_cpu_isa.py).
//
// Override: the environment variable UPSAMPLE_PLUGIN_CPU_ISA=base|avx2|avx512 (read at the first op call), or
// torch.ops.upsample_plugin._cpu_isa(name) / upsample_plugin.ops.set_cpu_isa(name) at run time. Asking for an
// instruction set the CPU lacks is an error, never a silent fallback.
#pragma once

#include <cstdint>

namespace upsample_plugin {
namespace cpu {

enum class Isa : int { base = 0, avx2 = 1, avx512 = 2 };

// "base", "avx2", "avx512".
const char* isa_name(Isa isa);
// The best instruction set this CPU and OS support.
Isa supported_isa();
// The instruction set the kernels use now (the override, else supported_isa()).
Isa active_isa();

}  // namespace cpu
}  // namespace upsample_plugin

// Calls FN(args...) from the build of the active instruction set: isa_avx512::FN, isa_avx2::FN or isa_base::FN,
// the namespaces that include/cpu_isa_instantiate.h makes in the calling file.
#define UPSAMPLE_PLUGIN_CALL_ISA(FN, ...)                                   \
  do {                                                                      \
    switch (::upsample_plugin::cpu::active_isa()) {                         \
      case ::upsample_plugin::cpu::Isa::avx512: isa_avx512::FN(__VA_ARGS__); break; \
      case ::upsample_plugin::cpu::Isa::avx2: isa_avx2::FN(__VA_ARGS__); break;     \
      default: isa_base::FN(__VA_ARGS__); break;                            \
    }                                                                       \
  } while (0)
