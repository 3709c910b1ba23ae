// upsample_plugin._C: the plugin's compiled ops, registered with the PyTorch dispatcher as
// torch.ops.upsample_plugin.<name>. Importing the module (upsample_plugin/ops/_library.py does) runs the
// static registrations below and in the per-device files; the module itself exposes nothing.
//
// Layout:
//   ops.cpp                 operator schemas (TORCH_LIBRARY), this file
//   include/common.h        HOST_DEVICE macro, shared argument checks
//   include/<op>_common.h   per-op geometry, per-element HOST_DEVICE arithmetic, the op's TORCH_CHECKs
//   cpu/<op>_cpu.cpp        TORCH_LIBRARY_IMPL(upsample_plugin, CPU, m): at::parallel_for, row loops
//   cuda/<op>_cuda.cu       TORCH_LIBRARY_IMPL(upsample_plugin, CUDA, m): grid-stride loops over elements
//
// Adding an op (DLU, DDF, ...):
//   1. Add its schemas below (forward, and a backward op that returns every input gradient).
//   2. Write include/<op>_common.h: a Geometry struct, a <op>_check_* function that TORCH_CHECKs every
//      shape/dtype/device condition (naming the argument and the expected shape) and HOST_DEVICE
//      per-element functions accumulating in at::opmath_type<scalar_t>.
//   3. Write cpu/<op>_cpu.cpp and cuda/<op>_cuda.cu with m.impl(...) for each schema. Make inputs
//      .contiguous() inside the op; handle numel() == 0; keep backward deterministic (gathers, no atomics).
//      setup.py globs cpu/*.cpp and cuda/*.cu: no build change is needed.
//   4. In upsample_plugin/ops/_library.py: torch.library.register_fake for each schema and
//      register_autograd for the forward (and, for double backward, for the backward).
//   5. Dispatch from the op's Python entry point (see ops/carafe.py) and test it in tests/test_compiled_ops.py.
//   (DDF: schemas in cpu/ddf_schema.cpp (TORCH_LIBRARY_FRAGMENT), fake/autograd in ops/_library_ddf.py.)
//   (DLU: schemas in cpu/dlu_schema.cpp (TORCH_LIBRARY_FRAGMENT), fake/autograd in ops/_library_dlu.py.)
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import upsample_plugin._C` needs a module init function; loading the library is what registers the ops.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",  // name
      "Compiled ops of upsample_plugin, registered as torch.ops.upsample_plugin.*",
      -1,       // no per-interpreter state
      nullptr,  // no methods
  };
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(upsample_plugin, m) {
  // CARAFE (spec/carafe.md). masks: (N, kernel_size**2 * group_size, H * scale_factor, W * scale_factor).
  m.def("carafe_forward(Tensor features, Tensor masks, int kernel_size, int group_size, int scale_factor) "
        "-> Tensor");
  // Returns (grad_features, grad_masks), deterministic.
  m.def("carafe_backward(Tensor grad_output, Tensor features, Tensor masks, int kernel_size, int group_size, "
        "int scale_factor) -> (Tensor, Tensor)");
}
