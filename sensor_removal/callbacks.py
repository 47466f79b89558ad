"""Training callbacks: what a researcher watches while a subject trains.

* :class:`ImageGrid` — the electrodes disappearing epoch by epoch: fixed validation
  frames as rows ``sensor | G_S→N | G_N→S(G_S→N)`` and ``normal | G_N→S | G_S→N(G_N→S)``.
* :class:`RunCheckpoint` — ``ModelCheckpoint`` whose folder defaults to
  ``<default_root_dir>/checkpoints`` whatever the logger, so a run's checkpoints are
  where the user pointed ``--trainer.default_root_dir``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from sensor_removal.data import to_tensor, to_uint8


def run_dir(trainer: pl.Trainer) -> Path:
    """The run's folder: ``--trainer.default_root_dir``."""
    return Path(trainer.default_root_dir)


def tile(rows: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """Stack equally sized uint8 images into a grid: ``rows[i]`` is ``(cols, H, W, 3)``."""
    n_cols = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    grid = np.full((len(rows) * (h + pad) + pad, n_cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y : y + h, x : x + w] = img
    return grid


def save_png(path: Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG atomically."""
    import cv2

    from sensor_removal.video import atomic_output

    with atomic_output(path.with_suffix(".png")) as tmp:
        tmp = tmp.with_suffix(".png") if tmp.suffix != ".png" else tmp
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write PNG")
    return path.with_suffix(".png")


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """Centre ``size`` crop of ``(N, S, S, 3)`` frames: the validation view of the data."""
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(frames[:, top : top + size, left : left + size])


class ImageGrid(pl.Callback):
    """Every ``every_n_epochs`` epochs, translate ``num_frames`` fixed validation frames
    of each domain and save the grid as ``<run>/grids/epoch_XXX.png`` (and log it to
    W&B as ``val/grid`` when the logger is a :class:`WandbLogger`).

    Rows: ``sensor | clean (G_S→N) | cycle (G_N→S of clean)``, then
    ``normal | G_N→S | cycle``. Only rank 0 computes and writes.
    """

    def __init__(self, every_n_epochs: int = 1, num_frames: int = 4) -> None:
        self.every_n_epochs = every_n_epochs
        self.num_frames = num_frames
        self.last_path: Path | None = None

    def _fixed_frames(self, trainer: pl.Trainer) -> dict[str, np.ndarray]:
        dm = trainer.datamodule
        size = dm.hparams.crop_size
        out = {}
        for domain in ("sensor", "normal"):
            frames = dm.frames(domain, "val")
            if len(frames) == 0:
                frames = dm.frames(domain, "train")
            # Evenly spread, fixed choice: the same frames every epoch.
            idx = np.linspace(0, len(frames) - 1, min(self.num_frames, len(frames))).round().astype(int)
            out[domain] = center_crop(frames[idx], size)
        return out

    @torch.no_grad()
    def grid(self, pl_module: pl.LightningModule, frames: dict[str, np.ndarray]) -> np.ndarray:
        was_training = pl_module.training
        pl_module.eval()
        try:
            rows = []
            for domain, forward, back in (
                ("sensor", pl_module.gen_s2n, pl_module.gen_n2s),
                ("normal", pl_module.gen_n2s, pl_module.gen_s2n),
            ):
                x = to_tensor(frames[domain]).to(pl_module.device)
                y = forward(x)
                z = back(y)
                for a, b, c in zip(frames[domain], to_uint8(y), to_uint8(z)):
                    rows.append(np.stack([a, b, c]))
            return tile(rows)
        finally:
            pl_module.train(was_training)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self._write(trainer, pl_module)

    @rank_zero_only
    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        image = self.grid(pl_module, self._fixed_frames(trainer))
        path = save_png(run_dir(trainer) / "grids" / f"epoch_{trainer.current_epoch:03d}", image)
        self.last_path = path
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(
                    key="val/grid",
                    images=[image],
                    caption=["rows: sensor | clean | cycle, then normal | G_N→S | cycle"],
                    step=trainer.global_step,
                )


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` writing to ``<default_root_dir>/checkpoints`` unless
    ``dirpath`` is given, independent of the logger's folders."""

    def _use_run_dir(self, trainer: pl.Trainer) -> None:
        if self.dirpath is None:
            self.dirpath = str(run_dir(trainer) / "checkpoints")

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._use_run_dir(trainer)
        super().setup(trainer, pl_module, stage)

    def _find_last_checkpoints(self, trainer: pl.Trainer) -> set[str]:
        # ``--ckpt_path last`` looks for last.ckpt before ``setup`` runs.
        self._use_run_dir(trainer)
        return super()._find_last_checkpoints(trainer)
