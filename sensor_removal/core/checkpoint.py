"""Reading a training checkpoint safely, and checking a resume against it.

Both the cleaner and ``fit --ckpt_path`` open checkpoints a user points at. They are read
with ``torch.load(weights_only=True)``: no code in the file runs; a pickle that would run
code is refused like any other file that is not a checkpoint. Hyper-parameters may hold
paths (the manifest), so exactly those classes are allowed beyond tensors.

A resume continues *the same* training: model and data options that differ from the
checkpoint's would silently train another network than the one on the command line (the
CLI used to take the checkpoint's values and record them as if asked for). So a resume
whose options differ stops with a list of the differences (:func:`resume_differences`).
"""

from __future__ import annotations

import contextlib
import math
import os
import pathlib
from pathlib import Path
from typing import Any

import torch

from sensor_removal.core.reference import REFERENCE_FRAMES

#: Data options that do not change what is trained (where and how fast frames load).
RESUME_IGNORED_DATA = frozenset({"num_workers", "decode_workers", "cache_dir"})
#: Model options that do not change what a resume trains: ``init_from`` only sets the
#: starting weights of a new fit, and a resume takes its weights from ``--ckpt_path``.
RESUME_IGNORED_MODEL = frozenset({"init_from"})


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file."""


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict, loaded with ``weights_only=True``
    (``mmap``: tensors stay on disk until used, for reading a few fields of a big file)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    safe = [pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]
    allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        with allow(safe) if allow is not None else contextlib.nullcontext():
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - any failure means: not a loadable checkpoint
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: cannot load as a checkpoint ({type(exc).__name__}: {first}); files that would run "
            "code when loaded are refused"
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return ckpt


def _same(a: Any, b: Any, key: str) -> bool:
    if key == "manifest" and a is not None and b is not None:
        # One path, or a population's list of paths (the same paths in the same order).
        if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
            if not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))) or len(a) != len(b):
                return False
            return all(Path(str(x)).resolve() == Path(str(y)).resolve() for x, y in zip(a, b, strict=True))
        return Path(str(a)).resolve() == Path(str(b)).resolve()
    if (
        isinstance(a, (int, float))
        and isinstance(b, (int, float))
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def resume_differences(ckpt: dict[str, Any], model: dict[str, Any], data: dict[str, Any]) -> list[str]:
    """``--model.X`` / ``--data.X`` options whose value differs from the checkpoint's
    ``hyper_parameters`` / ``datamodule_hyper_parameters``, one line each."""
    lines = []
    for section, given, saved in (
        ("model", model, ckpt.get("hyper_parameters") or {}),
        ("data", data, ckpt.get("datamodule_hyper_parameters") or {}),
    ):
        for key in sorted(set(given) & set(saved)):
            if key in (RESUME_IGNORED_DATA if section == "data" else RESUME_IGNORED_MODEL):
                continue
            if not _same(given[key], saved[key], key):
                lines.append(f"--{section}.{key}: {given[key]!r} now, {saved[key]!r} in the checkpoint")
    return lines


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The ``global_step`` of the checkpoint at ``path``, or None when it does not load
    (truncated by a full disk, zero bytes, not a checkpoint)."""
    try:
        ckpt = read_checkpoint(path, mmap=True)
    except CheckpointError:
        return None
    step = ckpt.get("global_step", 0)
    return int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else 0


def resume_candidate(paths: list[Path]) -> Path | None:
    """Which of ``paths`` a resume starts from: among those that load, the one with the
    most training (highest ``global_step``), the newest of equals. Modification time
    alone is wrong twice over: a setup failure once wrote a fresh, untrained checkpoint
    that was newer than the real one, and a full disk leaves a truncated newest file."""
    best: tuple[int, int, Path] | None = None
    for path in paths:
        if not path.is_file():
            continue
        step = checkpoint_step(path)
        if step is None:
            continue
        key = (step, path.stat().st_mtime_ns, path)
        if best is None or key[:2] > best[:2]:
            best = key
    return None if best is None else best[2]


def run_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Every checkpoint file of a run folder: ``checkpoints/*.ckpt`` and Lightning's
    SLURM requeue checkpoints ``hpc_ckpt_*.ckpt`` in the folder itself."""
    run = Path(run_dir)
    return sorted((run / "checkpoints").glob("*.ckpt")) + sorted(run.glob("hpc_ckpt_*.ckpt"))


#: Checkpoint key of the normal domain's per-position colour reference: a dict of plain
#: tensors (``NormalReference.state()`` of the cleaning package; ``frames`` is
#: ``(K, D, D, 3)`` uint8, the crops the ``reference`` compositing mask compares against).
#: Written at fit time from the training frames, so a lone video can be cleaned with it.
NORMAL_REFERENCE_KEY = "normal_reference"
#: Normal-domain frames the reference keeps (as many as the cleaner draws from recordings).
NORMAL_REFERENCE_FRAMES = REFERENCE_FRAMES
