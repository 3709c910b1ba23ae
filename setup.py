"""upsample_plugin: learned feature upsamplers for MMDetection 3.x and MMSegmentation 1.x."""
from pathlib import Path

from setuptools import find_packages, setup

setup(
    name='upsample_plugin',
    version='0.1.0',
    description='CARAFE, DySample, DLU, DDF-Up, LDA-AQU, FADE and SAPA as mmcv upsample layers for '
                'MMDetection 3.x and MMSegmentation 1.x',
    long_description=Path(__file__).with_name('README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    python_requires='>=3.8',
    packages=find_packages(include=['upsample_plugin', 'upsample_plugin.*']),
    install_requires=['torch>=2.1', 'mmengine>=0.10'],
    extras_require={'mm': ['mmcv==2.1.0', 'mmdet==3.3.0', 'mmsegmentation==1.2.2']},
)
