"""The measuring side of sensor-removal (docs/evaluation.md; paper Sec. 4).

Modules: :mod:`~evaluation.pairs` (which videos are compared), :mod:`~evaluation.metrics.perceptual`
(LPIPS, fast exact FID as torchmetrics metrics), :mod:`~evaluation.metrics.facial` (py-feat
series), :mod:`~evaluation.metrics.timeseries` (DTW, best-shift MAPE), :mod:`~evaluation.metrics.groundtruth`
(PSNR/SSIM on synthetic subjects), :mod:`~evaluation.protocol` (one subject → results),
:mod:`~evaluation.report` (tables and plots over subjects), :mod:`~evaluation.weights`
(pretrained weights, offline), :mod:`~evaluation.cli` (``python -m evaluation``).

Importing the package imports nothing heavy; use the modules.
"""

from evaluation.weights import available_metrics

__all__ = ["available_metrics"]
