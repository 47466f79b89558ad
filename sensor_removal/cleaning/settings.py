"""What cleaning is told and what it needs to know: the options' types and defaults,
:class:`CleanSettings` (read from the training run), the batch size, and
:class:`CleanError`, the one error every part of the package raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from sensor_removal.core.errors import UserError

Precision = Literal["auto", "fp32", "bf16"]
Composite = Literal["auto", "off"]
#: Default of ``--composite``: ``auto``, our compositing (the paper's full repaint is ``off``).
#: Chosen by measurement: better than the repaint against pixel ground truth on the
#: synthetic subject and on a realistic face (docs/compositing.md, "Defaults").
DEFAULT_COMPOSITE: Composite = "auto"
#: Default strength of ``clean``'s steady fill (ours; 0 is the paper's frame-by-frame
#: output): lowers flicker below the repaint's and raises PSNR (docs/compositing.md).
DEFAULT_STEADY = 0.9
#: Default mask method of ``clean``: ``reference`` (the normal domain's colours, stored in
#: the checkpoint at fit time); where no reference exists the cleaner falls back to
#: ``change`` and says so, unless the method was asked for explicitly.
DEFAULT_MASK_METHOD: Literal["change", "reference"] = "reference"
DeviceArg = Literal["auto", "cpu", "cuda"]
#: Name of the manifest of cleaned recordings inside the output folder.
CLEAN_MANIFEST = "manifest.yaml"
#: Lock file next to the cleaned manifest: concurrent cleans into one folder merge
#: their entries one after the other (each re-reads the manifest inside the lock).
CLEAN_MANIFEST_LOCK = f".{CLEAN_MANIFEST}.lock"
#: Name of the manifest of the full repaints (``NAME.repaint.mp4``) in the same folder:
#: the paper's method, kept next to our composited videos, so that the post-fit
#: benchmark can evaluate both.
REPAINT_MANIFEST = "manifest.repaint.yaml"
#: Name of the manifest of the detail composites (``NAME.detail.mp4``, ours) in the same
#: folder: the cleaned faces at the mask's finer size, for tools that want the
#: recording's resolution (the sEMG headline, ``emg report --cleaned``).
DETAIL_MANIFEST = "manifest.detail.yaml"
#: Default width of the paste-back blend ramp, in pixels of the full frame.
DEFAULT_FEATHER = 8


class CleanError(UserError):
    """Cleaning cannot proceed; the message names the file (and recording) at fault."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CleanSettings:
    """What inference needs to know about the training run.

    Every frame is cut with ``crop_resize(frame, bbox, inference_size)``, where
    ``inference_size`` is the training cache's ``load_size`` (286 in the paper): exactly
    the crop the training frames were taken from, so faces have the scale the generator
    learnt (the random ``crop_size`` = 256 training crops cut pieces out of it without
    rescaling). The generator is fully convolutional; the runner pads the input to a
    multiple of ``2 ** n_downsampling`` and crops the output back.
    ``manifest`` is the training manifest recorded in the checkpoint (may be relative to
    the directory training ran in), used when no manifest is given.
    ``reference_state`` is the normal domain's colour reference of the fit (tensors, not
    compared or printed), what the ``reference`` compositing mask needs.
    """

    crop_size: int
    load_size: int | None = None
    ngf: int | None = None
    n_blocks: int | None = None
    n_downsampling: int = 2
    manifest: Path | None = None
    checkpoint: Path | None = None
    #: The normal domain's colour reference stored at fit time (``NormalReference.state()``),
    #: None for a checkpoint from before it was stored; read it with
    #: :func:`~sensor_removal.cleaning.generator.checkpoint_reference`.
    reference_state: dict[str, torch.Tensor] | None = field(default=None, compare=False, repr=False)

    @property
    def inference_size(self) -> int:
        """Side of the face crop fed to the generator (and of the cleaned crop video)."""
        return int(self.load_size) if self.load_size else int(self.crop_size)


def default_batch_size(device: torch.device) -> int:
    """Frames per generator call when none is given.

    CUDA: 16 (fills the GPU; the pipeline keeps it fed). CPU: 2 — measured on 2 cores,
    256 px: larger batches are *slower* per frame (activations of 8 frames no longer fit
    in cache; ngf 64: 2.2 frames/s at batch 1, 2.1 at 2, 1.75 at 8).
    """
    return 16 if device.type == "cuda" else 2
