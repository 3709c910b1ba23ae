"""upsample_plugin: learned feature upsamplers for MMDetection 3.x and MMSegmentation 1.x.

Builds the optional extension ``upsample_plugin._C`` (upsample_plugin/ops/csrc, see ops.cpp) with
torch.utils.cpp_extension: CPU kernels always; CUDA kernels too when a CUDA toolkit and a CUDA torch are present,
or when ``FORCE_CUDA=1``. The extension is optional: without torch at build time, without a compiler, or when the
build fails, the plugin installs without it and runs its pure-PyTorch ops (one warning at the first op call).

Environment: ``FORCE_CUDA=1`` try the CUDA kernels whatever is detected (no GPU is needed at build time; a CUDA
torch and toolkit still are: with a CPU torch the CPU kernels are built, with a message);
``UPSAMPLE_PLUGIN_BUILD_EXT=0`` skip the extension; ``UPSAMPLE_PLUGIN_REQUIRE_EXT=1`` make a failed build an
error (CI); ``MAX_JOBS`` parallel compile jobs (ninja).
"""
import os
import sys
from pathlib import Path

from setuptools import find_packages, setup

CSRC = Path('upsample_plugin') / 'ops' / 'csrc'


def _env_flag(name: str) -> bool:
    return os.environ.get(name, '0') not in ('', '0')


def _std_flag(torch_version: str) -> str:
    # torch 2.13's headers still build as C++17; newer ones need C++20 (torch.utils.cpp_extension's default).
    major, minor = (int(part) for part in torch_version.split('+')[0].split('.')[:2])
    return '-std=c++17' if (major, minor) < (2, 14) else '-std=c++20'


def extensions_and_cmdclass():
    """(ext_modules, cmdclass) for the compiled ops, or ([], {}) when they cannot be built here."""
    if os.environ.get('UPSAMPLE_PLUGIN_BUILD_EXT', '1') == '0':
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError as err:  # e.g. an isolated build environment without torch
        print(f'upsample_plugin: torch is not importable at build time ({err}); installing without the compiled '
              f'ops (pip install --no-build-isolation builds them)', file=sys.stderr)
        return [], {}

    class OptionalBuildExtension(BuildExtension):
        """BuildExtension whose failures (no compiler, compile errors) skip optional extensions with a warning.

        setuptools' own ``optional=True`` handling only catches distutils' compiler errors, not the RuntimeError
        that torch's ninja build raises; setuptools already skips copying a missing optional extension in place.
        """

        def build_extensions(self):
            try:
                super().build_extensions()
            except Exception as err:  # noqa: BLE001 - any build failure leaves the pure-PyTorch ops
                if _env_flag('UPSAMPLE_PLUGIN_REQUIRE_EXT') or not all(e.optional for e in self.extensions):
                    raise
                self.warn(f'upsample_plugin: building the compiled ops failed ({type(err).__name__}: {err}); '
                          f'installing without them, the pure-PyTorch ops will be used')

    std = _std_flag(torch.__version__)
    # at::parallel_for is OpenMP in torch's CPU builds. -ffp-contract=off: the kernels' rounding-sensitive
    # arithmetic (include/common.h: mul_rn, sub_rn) must not be fused into FMAs by a -march=... build.
    cxx_flags = ['-O3', std, '-fopenmp', '-ffp-contract=off']
    if std == '-std=c++17':
        cxx_flags.append('-Wno-c++20-extensions')  # torch 2.13 headers use a C++20 nicety gcc accepts as C++17
    sources = [str(CSRC / 'ops.cpp')] + sorted(str(p) for p in (CSRC / 'cpu').glob('*.cpp'))
    with_cuda = _env_flag('FORCE_CUDA') or (CUDA_HOME is not None and torch.version.cuda is not None)
    kwargs = dict(include_dirs=[str((CSRC / 'include').resolve())], extra_link_args=['-fopenmp'], optional=True)
    if with_cuda:
        try:
            extension = CUDAExtension(
                'upsample_plugin._C', sources + sorted(str(p) for p in (CSRC / 'cuda').glob('*.cu')),
                define_macros=[('WITH_CUDA', None)], extra_compile_args={'cxx': cxx_flags, 'nvcc': ['-O3', std]},
                **kwargs)
        except (OSError, RuntimeError) as err:  # e.g. FORCE_CUDA=1 without a CUDA toolkit (CUDA_HOME)
            if _env_flag('UPSAMPLE_PLUGIN_REQUIRE_EXT'):
                raise
            print(f'upsample_plugin: cannot set up the CUDA kernels ({err}); building the CPU kernels only',
                  file=sys.stderr)
            with_cuda = False
    if not with_cuda:
        extension = CppExtension('upsample_plugin._C', sources, extra_compile_args={'cxx': cxx_flags}, **kwargs)
    print(f'upsample_plugin: building upsample_plugin._C with {"CPU and CUDA" if with_cuda else "CPU"} kernels',
          file=sys.stderr)
    return [extension], {'build_ext': OptionalBuildExtension}


ext_modules, cmdclass = extensions_and_cmdclass()

setup(
    name='upsample_plugin',
    version='0.1.0',
    description='CARAFE, DySample, DLU, DDF-Up, LDA-AQU, FADE and SAPA as mmcv upsample layers for '
                'MMDetection 3.x and MMSegmentation 1.x',
    long_description=Path(__file__).with_name('README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    python_requires='>=3.8',
    packages=find_packages(include=['upsample_plugin', 'upsample_plugin.*']),
    package_data={'upsample_plugin.ops': ['csrc/*.cpp', 'csrc/include/*.h', 'csrc/cpu/*.cpp', 'csrc/cuda/*.cu']},
    # The core (upsamplers, ops, build_upsampler) needs torch only; the mm registration and integration need 'mm'.
    install_requires=['torch>=2.1'],
    extras_require={'mm': ['mmengine>=0.10', 'mmcv==2.1.0', 'mmdet==3.3.0', 'mmsegmentation==1.2.2']},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
