"""Training callbacks: what a researcher watches while a subject trains.

* :class:`ImageGrid` — the electrodes disappearing epoch by epoch: fixed validation
  frames as rows ``sensor | G_S→N | G_N→S(G_S→N)`` and ``normal | G_N→S | G_S→N(G_N→S)``,
  labelled in the image (column titles above, row labels on the left).
* :class:`RunCheckpoint` — ``ModelCheckpoint`` whose folder defaults to
  ``<default_root_dir>/checkpoints`` whatever the logger, so a run's checkpoints are
  where the user pointed ``--trainer.default_root_dir``.
* :class:`InterruptCheckpoint` — ``OnExceptionCheckpoint`` that saves only a model that
  has trained (``interrupted.ckpt`` on Stop, SIGTERM, Ctrl-C).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only

from sensor_removal.core.tensors import to_tensor, to_uint8


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

    from sensor_removal.core.video import atomic_output

    with atomic_output(path.with_suffix(".png")) as tmp:
        tmp = tmp.with_suffix(".png") if tmp.suffix != ".png" else tmp
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write PNG")
    return path.with_suffix(".png")


#: Column titles burned into the grids (what each column shows).
GRID_COLUMNS = ("input", "translated", "cycle")


def label_bands(tile_size: int) -> tuple[int, int]:
    """Height of the title band above a grid and width of the row-label band on its
    left, for tiles of ``tile_size`` px."""
    return max(12, tile_size // 8), max(44, tile_size // 3)


def _put_text(image: np.ndarray, text: str, x: int, y: int, width: int, height: int) -> None:
    """Black ``text`` centred in the box ``(x, y, width, height)``, scaled to fit it."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    (w1, h1), _ = cv2.getTextSize(text, font, 1.0, 1)
    scale = min(0.7 * height / h1, (width - 4) / w1)
    (w, h), _ = cv2.getTextSize(text, font, scale, 1)
    org = (x + (width - w) // 2, y + (height + h) // 2)
    cv2.putText(image, text, org, font, scale, (0, 0, 0), 1, cv2.LINE_AA)


def with_labels(
    grid: np.ndarray, row_labels: list[str], col_labels: list[str], tile_size: int, pad: int = 2
) -> np.ndarray:
    """``grid`` (from :func:`tile`) with the column titles in a band above it and the row
    labels in a band on its left, so a PNG says what it shows without a caption."""
    top, left = label_bands(tile_size)
    out = np.full((grid.shape[0] + top, grid.shape[1] + left, 3), 255, np.uint8)
    out[top:, left:] = grid
    step = tile_size + pad
    for j, text in enumerate(col_labels):
        _put_text(out, text, left + pad + j * step, 0, tile_size, top)
    for i, text in enumerate(row_labels):
        _put_text(out, text, 0, top + pad + i * step, left, min(top, tile_size))
    return out


def spread_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` frames that differ from each other: greedily the frame farthest
    (on 16×16 thumbnails) from those already chosen, starting with the first — a
    validation split often holds runs of near-identical neighbouring frames."""
    import cv2

    n = min(n, len(frames))
    thumbs = np.stack([cv2.resize(f, (16, 16), interpolation=cv2.INTER_AREA) for f in frames]).reshape(len(frames), -1)
    thumbs = thumbs.astype(np.float32)
    chosen = [0]
    dist = np.linalg.norm(thumbs - thumbs[0], axis=1)
    while len(chosen) < n:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(thumbs - thumbs[nxt], axis=1))
    return np.array(chosen)


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """Centre ``size`` crop of ``(N, S, S, 3)`` frames: the validation view of the data."""
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(frames[:, top : top + size, left : left + size])


class ImageGrid(pl.Callback):
    """Every ``every_n_epochs`` epochs, translate ``num_frames`` fixed validation frames
    of each domain (chosen once to differ from each other: :func:`spread_frames`) and
    save the grid as ``<run>/grids/epoch_XXX.png`` (and log it to W&B as ``val/grid``
    when the logger is a :class:`WandbLogger`).

    Rows: ``sensor | clean (G_S→N) | cycle (G_N→S of clean)``, then
    ``normal | G_N→S | cycle``. Only rank 0 computes and writes.
    """

    def __init__(self, every_n_epochs: int = 1, num_frames: int = 4) -> None:
        self.every_n_epochs = every_n_epochs
        self.num_frames = num_frames
        self.last_path: Path | None = None

    def _fixed_frames(self, trainer: pl.Trainer) -> dict[str, np.ndarray]:
        dm = trainer.datamodule  # type: ignore[attr-defined]  # Lightning sets it at run time
        size = dm.hparams.crop_size
        out = {}
        for domain in ("sensor", "normal"):
            frames = dm.frames(domain, "val")
            if len(frames) == 0:
                frames = dm.frames(domain, "train")
            # A fixed choice (the same frames every epoch) of frames that differ.
            out[domain] = center_crop(frames[spread_frames(frames, self.num_frames)], size)
        return out

    @torch.no_grad()
    def grid(self, pl_module: pl.LightningModule, frames: dict[str, np.ndarray]) -> np.ndarray:
        was_training = pl_module.training
        pl_module.eval()
        try:
            rows = []
            s2n, n2s = pl_module.gen_s2n, pl_module.gen_n2s
            assert isinstance(s2n, torch.nn.Module) and isinstance(n2s, torch.nn.Module)  # CycleGAN's generators
            for domain, forward, back in (
                ("sensor", s2n, n2s),
                ("normal", n2s, s2n),
            ):
                x = to_tensor(frames[domain]).to(pl_module.device)
                y = forward(x)
                z = back(y)
                for a, b, c in zip(frames[domain], to_uint8(y), to_uint8(z), strict=True):
                    rows.append(np.stack([a, b, c]))
            names = [f"{d} {i + 1}" for d in ("sensor", "normal") for i in range(len(frames[d]))]
            return with_labels(tile(rows), names, list(GRID_COLUMNS), rows[0].shape[1])
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
                    caption=["columns: input | translated | cycle; sensor rows, then normal rows"],
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


class InterruptCheckpoint(OnExceptionCheckpoint):
    """``OnExceptionCheckpoint`` that writes nothing before the first training step.

    An exception during setup (a damaged frame cache, a full disk while it is built, Stop
    while frames decode) comes before a resumed checkpoint is restored: the model then
    holds fresh, untrained weights, and Lightning's callback would save them as
    ``interrupted.ckpt`` (``global_step`` 0), newer than the run's real checkpoint.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A fresh start into a folder that holds an earlier attempt's ``interrupted.ckpt``
        (one this fit did not resume from) drops it: with more steps than the new run's
        checkpoints, it would otherwise be what the next resume takes."""
        resumed = trainer.ckpt_path and Path(trainer.ckpt_path).resolve() == Path(self.ckpt_path).resolve()
        if not resumed and trainer.is_global_zero and Path(self.ckpt_path).is_file():
            Path(self.ckpt_path).unlink()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.global_step == 0:
            rank_zero_info(
                f"{type(exception).__name__} before the first training step: no {self.filename}.ckpt written"
            )
            return
        super().on_exception(trainer, pl_module, exception)
