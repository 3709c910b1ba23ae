// DDF (spec/ddf.md, "Custom op") operator schemas, in their own TORCH_LIBRARY_FRAGMENT so that ops.cpp keeps
// only CARAFE's; compiled into CPU and CUDA builds alike (setup.py globs cpu/*.cpp). Kernels: cpu/ddf_cpu.cpp,
// cuda/ddf_cuda.cu; fake + autograd: upsample_plugin/ops/_library_ddf.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(upsample_plugin, m) {
  // features (N, C, H, W); channel_filter (N, C, k, k); spatial_filter (N, k*k, H // stride, W // stride);
  // combine 'mul' or 'add'. Returns (N, C, H // stride, W // stride). Argument order is relied on by
  // upsample_plugin/complexity.py (kernel_size at index 3, combine at index 6).
  m.def("ddf_forward(Tensor features, Tensor channel_filter, Tensor spatial_filter, int kernel_size, int dilation, "
        "int stride, str combine) -> Tensor");
  // Returns (grad_features, grad_channel_filter, grad_spatial_filter), deterministic (gathers, no atomics).
  m.def("ddf_backward(Tensor grad_output, Tensor features, Tensor channel_filter, Tensor spatial_filter, "
        "int kernel_size, int dilation, int stride, str combine) -> (Tensor, Tensor, Tensor)");
}
