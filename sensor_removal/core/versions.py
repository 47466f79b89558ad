"""Versions of the libraries that change the numbers, recorded with every result
(``summary.json``) and every training run (the W&B config), so a table can be traced to
the software that made it."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

#: Distributions whose versions are recorded by default.
LIBRARIES: tuple[str, ...] = (
    "sensor-removal",
    "torch",
    "torchvision",
    "pytorch-lightning",
    "torchmetrics",
    "lpips",
    "torch-fidelity",
    "dtaidistance",
    "py-feat",
    "numpy",
    "opencv-python-headless",
    "av",
    "wandb",
)


def library_versions(libraries: Sequence[str] = LIBRARIES) -> dict[str, str]:
    """``{distribution: version}`` (``"not installed"`` when absent) plus ``python``."""
    out = {"python": platform.python_version()}
    for pkg in libraries:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
