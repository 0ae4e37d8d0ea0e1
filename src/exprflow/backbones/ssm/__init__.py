"""State-space and long-convolution sequence mixers: S4D, Hyena, Mamba (with pluggable scans).

Importing this package registers ``s4d``, ``hyena`` and ``mamba`` in
:data:`exprflow.backbones.sequence.MIXERS` and the scans in :data:`SCANS`.
"""

from exprflow.backbones.ssm.hyena import Hyena, ImplicitFilter
from exprflow.backbones.ssm.mamba import Mamba, SelectiveSSM
from exprflow.backbones.ssm.s4d import S4D, S4DKernel, fft_conv, two_sided_kernel
from exprflow.backbones.ssm.scans import SCANS, chunked_scan, cuda_scan_available, reference_scan

__all__ = ["SCANS", "S4D", "Hyena", "ImplicitFilter", "Mamba", "S4DKernel", "SelectiveSSM", "chunked_scan",
           "cuda_scan_available", "fft_conv", "reference_scan", "two_sided_kernel"]
