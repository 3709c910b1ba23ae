"""One module per method; importing this package registers them all (see ``upsample_plugin.registry``)."""
from .base import Upsampler
from .carafe import CARAFEPack
from .ddf_up import DDFPack, DDFUpPack
from .dlu import DLUPack
from .dysample import DySample
from .fade import FADE, FADELite
from .freqfusion import FreqFusion
from .frfu import FRFU
from .lda_aqu import LDA_AQU
from .sapa import SAPA, SAPADeform

__all__ = ['Upsampler', 'CARAFEPack', 'DDFPack', 'DDFUpPack', 'DLUPack', 'DySample', 'FADE', 'FADELite', 'FreqFusion',
           'FRFU', 'LDA_AQU', 'SAPA', 'SAPADeform']
