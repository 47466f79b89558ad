"""What several benchmarks share, so that each measures the same way.

* A synthetic subject of the size the command line asks for (``--seconds``, ``--size``,
  ``--fps``, ``--quick``), rendered into a temporary folder that goes when the benchmark
  is done: the decoding benchmarks need real H.264 files of a known length.
* A Lightning ``Trainer`` that runs training steps and nothing else (no validation,
  logging, checkpoints, progress bar), with a callback that clocks every batch: the
  training benchmarks time steps, not bookkeeping.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytorch_lightning as pl

    from sensor_removal.core.manifest import Subject

from sensor_removal.core.cpu import cpu_facts, cpu_line  # noqa: F401  (every benchmark prints the CPU)

#: Frame size of the synthetic videos (``--size``), and with ``--quick``.
SIZE, QUICK_SIZE = "640x480", "320x240"


def subject_arguments(ap: argparse.ArgumentParser, seconds: float, fps: float | None = 30.0) -> None:
    """``--seconds`` (default ``seconds``), ``--size``, ``--fps`` (unless ``fps`` is None:
    a benchmark with a fixed rate) and ``--quick``."""
    ap.add_argument("--seconds", type=float, default=seconds)
    ap.add_argument("--size", default=SIZE)
    if fps is not None:
        ap.add_argument("--fps", type=float, default=fps)
    ap.add_argument("--quick", action="store_true", help=f"short videos, {QUICK_SIZE}")


def frame_size(args: argparse.Namespace, quick_seconds: float) -> tuple[int, int]:
    """``(width, height)`` of ``--size``; ``--quick`` first sets ``quick_seconds`` and
    :data:`QUICK_SIZE` (in ``args``, so the benchmark prints what it ran)."""
    if args.quick:
        args.seconds, args.size = quick_seconds, QUICK_SIZE
    w, h = (int(v) for v in args.size.split("x"))
    return w, h


@contextmanager
def synthetic_subject(seconds: float, fps: float, size: tuple[int, int]) -> Iterator[tuple[Path, Subject]]:
    """The synthetic subject (seed 0) in a temporary folder: ``(folder, subject)``."""
    from sensor_removal.core.manifest import load_manifest
    from sensor_removal.synthetic import make_subject

    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_subject(Path(tmp) / "subject", seconds=seconds, fps=fps, size=size, seed=0)
        yield Path(tmp), load_manifest(manifest)


def trainer_for(steps: int, precision: str, clock: pl.Callback, accelerator: str = "auto") -> pl.Trainer:
    """``steps`` training batches (over as many epochs as that takes), nothing else;
    ``clock`` sees every batch end."""
    import pytorch_lightning as pl

    return pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        max_epochs=-1,
        max_steps=2 * steps,  # global_step counts G and D steps
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
