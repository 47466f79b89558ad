"""Fit-time perceptual metrics: the evaluation's LPIPS and FID (paper Sec. 4.2) on the
validation frames every few epochs, logged as ``val/{lpips,fid}_{clean,sensor}``.

A training callback that uses the evaluation's metrics, so it lives above both layers
(training must not import the evaluation); ``conf/default.yaml`` names it as
``sensor_removal.workflows.fit_metrics.PerceptualMetrics``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info

from sensor_removal.core.tensors import to_tensor
from sensor_removal.training.callbacks import center_crop

#: The fit-side switch, named where the LPIPS/FID weights are missing.
TRAIN_WITHOUT = (
    "Or train without the LPIPS/FID callback: --perceptual_metrics false (perceptual_metrics: false in your config)."
)


class PerceptualMetrics(pl.Callback):
    """Every ``every_n_epochs`` epochs: LPIPS and FID between G_S→N(validation sensor
    frames) and the validation normal frames, and the same for the untouched sensor
    frames as the reference row — ``val/lpips_clean``, ``val/lpips_sensor``,
    ``val/fid_clean``, ``val/fid_sensor`` (paper Sec. 4.2's metrics, on validation frames).

    Uses the evaluation package's metrics (:class:`evaluation.metrics.perceptual.LPIPSMean`,
    :class:`evaluation.metrics.perceptual.FIDLowRank`): one implementation. Under DDP each rank
    translates its share of the frames and the metrics gather the per-sample states, so
    every rank logs the same value, computed once over all frames.

    LPIPS pairs are unpaired draws: frame ``i`` of one side against a seeded random
    normal frame, the same draws every epoch. The validation frames do not change during
    a fit, so the normal frames' Inception features and the sensor reference row are
    computed once per fit; each later epoch runs only G_S→N and the metrics of its
    output. FID uses ``fid_set_size`` frames per side (the paper's N = 128; fewer when
    the validation split is smaller) over ``fid_sets`` seeded draws.

    ``heldout_frames`` (default 0): that many extra frames per domain, drawn outside the
    training sample (:meth:`sensor_removal.training.data.FramesDataModule.heldout_frames`, decoded
    once per fit), join the validation frames, so that the FID has full sets of
    ``fid_set_size`` frames; choosing the checkpoint by ``val/fid_clean`` requires it
    (:func:`sensor_removal.workflows.postfit.check_best_by_metric`). The number of frames per side
    the metrics used is logged once per fit.

    Missing AlexNet / Inception weights stop the fit before it starts, with the message
    naming the files and the fetch command; ``--perceptual_metrics false`` trains without
    this callback. Keep ``every_n_epochs`` equal to the checkpoint's when it monitors
    ``val/fid_clean``.
    """

    KEYS = ("val/lpips_clean", "val/lpips_sensor", "val/fid_clean", "val/fid_sensor")

    def __init__(
        self,
        every_n_epochs: int = 1,
        max_frames: int = 512,
        fid_set_size: int = 128,
        fid_sets: int = 1,
        batch_size: int = 16,
        seed: int = 0,
        heldout_frames: int = 0,
    ) -> None:
        if heldout_frames < 0:
            raise ValueError(f"PerceptualMetrics: heldout_frames must be >= 0, got {heldout_frames}")
        self.heldout_frames = heldout_frames
        self._frames: dict[str, np.ndarray] | None = None
        self.frames_used: dict[str, int] = {}
        self.every_n_epochs = every_n_epochs
        self.max_frames = max_frames
        self.fid_set_size = fid_set_size
        self.fid_sets = fid_sets
        self.batch_size = batch_size
        self.seed = seed
        self._lpips_net: torch.nn.Module | None = None
        self._inception: torch.nn.Module | None = None
        self._normal_features: list[torch.Tensor] | None = None
        self._reference: dict[str, float] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from evaluation.metrics.perceptual import load_inception, load_lpips
        from evaluation.weights import check_weights

        check_weights(["lpips", "fid"], leave_out=TRAIN_WITHOUT)  # MissingWeightsError: the fit does not start
        self._lpips_net = load_lpips(device=pl_module.device)
        self._inception = load_inception(device=pl_module.device)
        self._normal_features = None  # cached per fit: this rank's validation normal frames
        self._reference = None
        self._frames = None

    def _measured_frames(self, trainer: pl.Trainer) -> dict[str, np.ndarray]:
        """The validation frames plus ``heldout_frames`` extra ones per domain, centre
        cropped; built once per fit, and their count logged."""
        if self._frames is None:
            dm = trainer.datamodule  # type: ignore[attr-defined]  # Lightning sets it at run time
            size = dm.hparams.crop_size
            out = {}
            for domain in ("sensor", "normal"):
                frames = dm.frames(domain, "val")[: self.max_frames]
                if self.heldout_frames:
                    frames = np.concatenate([frames, dm.heldout_frames(domain, self.heldout_frames)])
                out[domain] = center_crop(frames, size)
            self._frames = out
            self.frames_used = {d: len(f) for d, f in out.items()}
            n_fid = min(self.fid_set_size, *self.frames_used.values())
            rank_zero_info(
                f"PerceptualMetrics: LPIPS/FID on {self.frames_used['sensor']} sensor and "
                f"{self.frames_used['normal']} normal frames per epoch "
                f"({self.heldout_frames} per domain held out from outside the training sample); "
                f"FID sets of {n_fid} frames"
            )
        return self._frames

    @staticmethod
    def _shard(trainer: pl.Trainer, items: np.ndarray) -> np.ndarray:
        """This rank's contiguous block of ``items``. The metrics gather their states in
        rank order, so the blocks come back in the original order: the metrics see the
        same samples, in the same order, whatever the number of processes."""
        return np.array_split(items, trainer.world_size)[trainer.global_rank]

    @torch.no_grad()
    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        from evaluation.metrics.perceptual import FIDLowRank, LPIPSMean

        frames = self._measured_frames(trainer)
        sensor_all, normal_all = frames["sensor"], frames["normal"]
        # LPIPS partners are drawn for all frames at once, then sharded with them, so the
        # pairs do not depend on the number of processes either.
        # Fixed across epochs too, so the sensor reference row does not move by chance.
        rng = np.random.default_rng(self.seed)
        partner_idx = self._shard(trainer, rng.integers(0, len(normal_all), len(sensor_all)))
        sensor = self._shard(trainer, sensor_all)
        normal = self._shard(trainer, normal_all)
        device = pl_module.device
        bs = self.batch_size

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for i in range(0, len(sensor), bs):
                yield (
                    to_tensor(sensor[i : i + bs]).to(device),
                    to_tensor(normal_all[partner_idx[i : i + bs]]).to(device),
                )

        def new_metrics() -> tuple[LPIPSMean, FIDLowRank]:
            lp = LPIPSMean(net=self._lpips_net, batch_size=bs).to(device)
            fid = FIDLowRank(self._inception, self.fid_set_size, self.fid_sets, self.seed, bs).to(device)
            return lp, fid

        if self._normal_features is None:  # the validation frames never change: once per fit
            fid = new_metrics()[1]
            self._normal_features = [
                fid.features(to_tensor(normal[i : i + bs]).to(device)) for i in range(0, len(normal), bs)
            ]
        if self._reference is None:  # the untouched sensor frames: the "no cleaning" row
            lp, fid = new_metrics()
            for s, partners in batches():
                lp.update(s, partners)
                fid.update(None, s)
            for f in self._normal_features:
                fid.update_features(f, None)
            self._reference = {"val/lpips_sensor": float(lp.compute()), "val/fid_sensor": float(fid.compute())}
        lp, fid = new_metrics()
        s2n = pl_module.gen_s2n
        assert isinstance(s2n, torch.nn.Module)  # CycleGAN's sensor-to-normal generator
        was_training = pl_module.training
        pl_module.eval()
        try:
            for s, partners in batches():
                clean = s2n(s).clamp(-1, 1)
                lp.update(clean, partners)
                fid.update(None, clean)
        finally:
            pl_module.train(was_training)
        for f in self._normal_features:
            fid.update_features(f, None)
        return {"val/lpips_clean": float(lp.compute()), "val/fid_clean": float(fid.compute()), **self._reference}

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        for key, value in self.measure(trainer, pl_module).items():
            # Already gathered over ranks by the metrics: identical everywhere, no sync.
            pl_module.log(key, value, on_epoch=True, sync_dist=False)
