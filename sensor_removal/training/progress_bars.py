"""Lightning progress bars: plain lines when stdout is a file, Rich in a terminal
(see :mod:`sensor_removal.core.progress` for why).

* :class:`TextProgressBar` — :class:`~sensor_removal.core.progress.TextProgress` lines for a
  fit (a ``ProgressBar``, so Lightning adds no bar of its own);
* :class:`TerminalProgressBar` — Lightning's Rich bar, stopped when training ends so the
  post-fit hook's lines are not drawn over;
* :func:`progress_bar_for` — the one that suits the stream.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar

from sensor_removal.core.progress import EVERY_S, TextProgress, format_duration, is_terminal


def _short(metrics: dict[str, Any]) -> str:
    out = []
    for key, value in metrics.items():
        if key == "v_num":
            continue
        try:
            out.append(f"{key.split('/')[-1].removesuffix('_step')} {float(value):.4g}")
        except (TypeError, ValueError):
            continue
    return " ".join(out)


class TextProgressBar(ProgressBar):
    """Plain progress lines for a fit whose output goes to a file: every ``every_s``
    seconds ``epoch e/E, batch b/B, fit: s/S steps (p%), steps/s, elapsed, ETA of the fit
    | latest losses`` (a step is one batch: a generator and a discriminator update), and
    one line per validated epoch with the validation metrics. Rank 0 only."""

    def __init__(self, every_s: float = EVERY_S, stream: IO[str] | None = None) -> None:
        super().__init__()
        self.every_s = every_s
        self.stream = stream
        self._enabled = True
        self._steps: TextProgress | None = None
        self._epoch_start = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _total_steps(self, trainer: pl.Trainer) -> int | None:
        per_epoch = self.total_train_batches
        max_epochs = trainer.max_epochs
        if not math.isfinite(per_epoch) or max_epochs is None or max_epochs == -1:
            return None
        total = int(per_epoch) * int(max_epochs)
        if trainer.max_steps not in (None, -1):  # manual optimisation: two optimiser steps per batch
            total = min(total, int(trainer.max_steps))
        return total

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled:
            return
        if self._steps is None:
            self._steps = TextProgress(
                self._total_steps(trainer), "fit", "steps", self.every_s, self.stream or sys.stdout
            )
            self._steps.initial = self._steps.done = self._done(trainer, 0)  # a resumed fit starts later
        self._epoch_start = time.monotonic()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._enabled or self._steps is None:
            return
        epochs = "?" if trainer.max_epochs in (None, -1) else trainer.max_epochs
        per_epoch = self.total_train_batches
        per = int(per_epoch) if math.isfinite(per_epoch) else "?"
        self._steps.desc = f"epoch {trainer.current_epoch + 1}/{epochs}, batch {batch_idx + 1}/{per}, fit"
        self._steps.done = self._done(trainer, batch_idx)
        self._steps.update(1, _short(self.get_metrics(trainer, pl_module)))

    def _done(self, trainer: pl.Trainer, batch_idx: int) -> int:
        """Batches finished before ``batch_idx`` of this epoch, over the whole fit."""
        per_epoch = self.total_train_batches
        per = int(per_epoch) if math.isfinite(per_epoch) else 0
        return trainer.current_epoch * per + batch_idx

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled or trainer.sanity_checking:
            return
        val = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        epochs = "?" if trainer.max_epochs in (None, -1) else trainer.max_epochs
        took = format_duration(time.monotonic() - self._epoch_start)
        stream = self.stream or sys.stdout
        print(
            (
                f"epoch {trainer.current_epoch + 1}/{epochs} validated ({took} since the epoch began) | {_short(val)}"
            ).rstrip(" |"),
            file=stream,
            flush=True,
        )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._enabled and self._steps is not None:
            self._steps.desc = "fit finished"
            self._steps.close(_short(self.get_metrics(trainer, pl_module)))


class TerminalProgressBar(RichProgressBar):
    """Lightning's Rich bar, stopped when training ends: the post-fit hook's cleaning and
    evaluation lines then appear below the finished bar instead of being drawn over."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._stop_progress()


def progress_bar_for(stream: IO[str] | None = None, every_s: float = EVERY_S) -> ProgressBar:
    """The Rich bar on a terminal, plain lines every ``every_s`` seconds otherwise."""
    stream = stream if stream is not None else sys.stdout
    return TerminalProgressBar() if is_terminal(stream) else TextProgressBar(every_s=every_s)
