// DLU fused reassembly schemas (spec/dlu.md steps 5-6; include/dlu_common.h). A fragment of the upsample_plugin
// library so it is compiled in CPU and CUDA builds without touching ops.cpp. Argument order is fixed:
// upsample_plugin/complexity.py reads kernel_size at input 3 and group_size at input 4.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(upsample_plugin, m) {
  // features (N, C, H, W); kernel_space (N, k*k*G, H, W); offsets (N, G*2*s*s, H, W), channel
  // (g*2 + xy)*s*s + i*s + j. Returns (N, C, H*s, W*s).
  m.def("dlu_forward(Tensor features, Tensor kernel_space, Tensor offsets, int kernel_size, int group_size, "
        "int scale_factor) -> Tensor");
  // Returns (grad_features, grad_kernel_space, grad_offsets), deterministic.
  m.def("dlu_backward(Tensor grad_output, Tensor features, Tensor kernel_space, Tensor offsets, int kernel_size, "
        "int group_size, int scale_factor) -> (Tensor, Tensor, Tensor)");
}
