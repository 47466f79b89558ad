"""The generator G_S→N at inference: :func:`load_generator` takes it (and only it) from a
checkpoint; :class:`GeneratorRunner` is one forward pass, the same object for the
pipeline and the benchmark so both time the same computation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from sensor_removal.cleaning.mask import NormalReference
from sensor_removal.cleaning.settings import CleanError, CleanSettings, Precision
from sensor_removal.core.checkpoint import NORMAL_REFERENCE_KEY, CheckpointError, read_checkpoint
from sensor_removal.core.device import resolve_device
from sensor_removal.core.tensors import to_tensor


def _int_hparam(hp: dict[str, Any], key: str, path: Path, section: str, default: int | None = None) -> int:
    value = hp.get(key, default)
    if value is None:
        raise CleanError(f"{path}: checkpoint field {section}.{key} missing (not a sensor-removal checkpoint?)")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 0:
        raise CleanError(f"{path}: checkpoint field {section}.{key} must be a non-negative integer, got {value!r}")
    return int(value)


def load_generator(ckpt_path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, CleanSettings]:
    """Load only G_S→N (``gen_s2n.*``) from a Lightning checkpoint of
    :class:`sensor_removal.training.module.CycleGAN`.

    Returns the generator in eval mode on ``device`` and the settings inference needs
    (``hyper_parameters``: ``ngf``, ``n_blocks``; ``datamodule_hyper_parameters``:
    ``crop_size``, ``load_size``, ``manifest``).
    The checkpoint is read with ``weights_only=True`` (no code runs from the file); any
    file that is not a checkpoint of this project raises :class:`CleanError` naming it.
    """
    from sensor_removal.models.networks import GENERATORS, build_generator

    path = Path(ckpt_path)
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as exc:
        raise CleanError(str(exc)) from None
    prefix = "gen_s2n."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise CleanError(
            f"{path}: checkpoint has no '{prefix}*' weights (G_S→N); not a sensor-removal CycleGAN checkpoint"
        )
    hp = ckpt.get("hyper_parameters")
    dhp = ckpt.get("datamodule_hyper_parameters")
    if not isinstance(hp, dict):
        raise CleanError(f"{path}: checkpoint has no 'hyper_parameters' (not a sensor-removal checkpoint?)")
    if not isinstance(dhp, dict):
        raise CleanError(f"{path}: checkpoint has no 'datamodule_hyper_parameters' (crop_size unknown)")
    ngf = _int_hparam(hp, "ngf", path, "hyper_parameters")
    n_blocks = _int_hparam(hp, "n_blocks", path, "hyper_parameters")
    n_down = _int_hparam(hp, "n_downsampling", path, "hyper_parameters", default=2)
    crop_size = _int_hparam(dhp, "crop_size", path, "datamodule_hyper_parameters")
    if crop_size == 0 or crop_size % (2**n_down):
        raise CleanError(f"{path}: crop_size {crop_size} is not a positive multiple of {2**n_down}")
    load_size = dhp.get("load_size")
    manifest = dhp.get("manifest")
    if isinstance(manifest, (list, tuple)):  # a population model's subjects: none is "the" subject
        manifest = None
    kind = hp.get("generator", "resnet")  # checkpoints from before the option: the paper's
    if kind not in GENERATORS:
        raise CleanError(
            f"{path}: checkpoint field hyper_parameters.generator {kind!r} is not one of {list(GENERATORS)}"
        )
    gen = build_generator(kind, ngf=ngf, n_blocks=n_blocks, n_downsampling=n_down)
    try:
        gen.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CleanError(f"{path}: G_S→N weights do not match ngf={ngf}, n_blocks={n_blocks}: {exc}") from None
    gen.eval().requires_grad_(False)
    gen.to(resolve_device(device))
    reference = ckpt.get(NORMAL_REFERENCE_KEY)
    if reference is not None and (
        not isinstance(reference, dict) or not all(isinstance(v, torch.Tensor) for v in reference.values())
    ):
        raise CleanError(f"{path}: checkpoint field {NORMAL_REFERENCE_KEY} is not a dict of tensors")
    settings = CleanSettings(
        crop_size=crop_size,
        load_size=None if load_size is None else int(load_size),
        ngf=ngf,
        n_blocks=n_blocks,
        n_downsampling=n_down,
        manifest=None if manifest is None else Path(manifest),
        checkpoint=path,
        reference_state=reference,
    )
    return gen, settings


def checkpoint_reference(settings: CleanSettings, device: str | torch.device = "cpu") -> NormalReference | None:
    """The normal domain's colour reference stored in the checkpoint at fit time (what
    the ``reference`` compositing mask compares against), or None for a checkpoint from
    before it was stored. Its crops must have the side the cleaner cuts
    (``settings.inference_size``, the training cache's ``load_size``); a reference of
    another size or one that does not load raises :class:`CleanError` naming the file."""
    if settings.reference_state is None:
        return None
    source = f"{settings.checkpoint or 'checkpoint'}: field {NORMAL_REFERENCE_KEY}"
    try:
        ref = NormalReference.from_state(settings.reference_state, source, device=str(resolve_device(device)))
    except ValueError as exc:
        raise CleanError(str(exc)) from None
    size = settings.inference_size
    if ref.frames.shape[1] != ref.frames.shape[2] or ref.frames.shape[1] < size:
        raise CleanError(
            f"{source}: reference crops are {ref.frames.shape[1]}x{ref.frames.shape[2]} px but the checkpoint's "
            f"crops are {size}x{size} (datamodule_hyper_parameters load_size/crop_size) and the reference must be "
            "square and at least that size; re-fit to store a matching reference"
        )
    return ref


def missing_reference_error(settings: CleanSettings) -> CleanError:
    """The error for mask method ``reference`` without any reference to use."""
    return CleanError(
        f"{settings.checkpoint or 'checkpoint'}: mask method 'reference' needs the normal domain's colour "
        f"reference, and this checkpoint has none (field {NORMAL_REFERENCE_KEY}: fitted before it was stored). "
        "Re-fit to store it, clean a manifest that lists the subject's normal recordings (--manifest), "
        "or use --mask-method change"
    )


# --------------------------------------------------------------------------- inference


class GeneratorRunner:
    """One forward pass as the pipeline does it: uint8 batch → model output.

    ``(B, S, S, 3)`` uint8 (CPU) → device → :func:`to_tensor` → channels_last (default: on
    CUDA) → generator under autocast (bf16 when ``precision`` resolves to it: ``auto`` is
    bf16 on CUDA when supported, fp32 otherwise). Moves the generator to ``device`` and
    its memory format accordingly. Call it inside ``torch.inference_mode()``. The
    benchmark uses the same object, so "generator only" and "end to end" time the same
    computation.
    """

    def __init__(
        self,
        generator: nn.Module,
        device: torch.device,
        precision: Precision = "auto",
        channels_last: bool | None = None,
        multiple: int = 4,
    ) -> None:
        self.generator = generator
        self.device = device
        self.multiple = multiple  # 2 ** n_downsampling: input sides must divide by it
        if precision == "auto":
            bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
            precision = "bf16" if bf16_ok else "fp32"
        self.precision: Literal["fp32", "bf16"] = precision  # type: ignore[assignment]
        self.channels_last = device.type == "cuda" if channels_last is None else channels_last
        generator.to(device)
        generator.to(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def to_input(self, batch_u8: torch.Tensor) -> torch.Tensor:
        x = to_tensor(batch_u8.to(self.device, non_blocking=True))
        # to_tensor's permute leaves NHWC strides; make the layout match the weights'
        # (NCHW on CPU is ~5 % faster with contiguous input; a no-op for channels_last).
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        if pad_h or pad_w:  # e.g. 286 -> 288: reflect, as the generator pads its borders
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.generator(x)[..., :h, :w]

    def __call__(self, batch_u8: torch.Tensor) -> torch.Tensor:
        return self.forward(self.to_input(batch_u8))
