"""Training frames (docs/design.md "Training"; paper Sec. 3.2).

The paper trains each subject's CycleGAN on a *uniformly random* 2 % of all frames of
each domain — random rather than equidistant, because equidistant sampling at a fixed
stride can systematically miss short events such as blinks. The frames are cut with the
recording's fixed bbox, resized to the load size (286) and cached once as uint8 on
disk, so that 30 epochs and every later run of the same subject decode nothing.
Augmentation follows the CycleGAN recipe: random 256 crop, horizontal flip, [-1, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.data import AttributeDict
from torch.utils.data import DataLoader, Dataset

from sensor_removal.core.argtypes import HalfOpenShare, NonNegativeInt, PositiveInt, UnitShare
from sensor_removal.core.checkpoint import NORMAL_REFERENCE_FRAMES
from sensor_removal.core.manifest import ManifestError, Subject, load_manifest
from sensor_removal.core.reference import reference_crops, reference_size
from sensor_removal.core.video import probe
from sensor_removal.training.frame_cache import (
    DOMAINS,
    Domain,
    FrameCache,
    build_frame_cache,
    decode_crops,
    domain_seed,
    sample_size,
    split_train_val,
)
from sensor_removal.training.pool import ConcatFrames, PooledCache, manifest_list, pool_caches, pool_splits, share

#: Frames each domain needs at least: one to train on, one to validate on.
MIN_FRAMES_PER_DOMAIN = 2


class DataSettingsError(ValueError):
    """Data options that do not fit together; the message names the options."""


#: What ``FramesDataModule.cache`` holds: one subject's cache, or a population's.
AnyCache = FrameCache | PooledCache[FrameCache]


def augment(image: torch.Tensor, crop_size: int, train: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """CycleGAN augmentation of one ``(3, S, S)`` image (any dtype; the loader passes
    uint8): a random ``crop_size`` crop and a random horizontal flip when training; the
    centre crop otherwise (deterministic validation). Crop and flip only move pixels, so
    doing them on uint8 gives the same values as on float, at a quarter of the bytes."""
    _, h, w = image.shape
    if train:
        top = int(torch.randint(0, h - crop_size + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - crop_size + 1, (1,), generator=generator))
    else:
        top, left = (h - crop_size) // 2, (w - crop_size) // 2
    out = image[:, top : top + crop_size, left : left + crop_size]
    if train and bool(torch.rand((), generator=generator) < 0.5):
        out = out.flip(-1)
    return out


class UnpairedFrames(Dataset):
    """Items ``{"sensor": x, "normal": y}``: a sensor frame and an *independently drawn*
    normal frame (unpaired training, as in CycleGAN). Length is the larger domain.
    For validation the normal frame is chosen by index, so batches are reproducible.

    Items are uint8 ``(3, crop, crop)`` tensors straight from the uint8 cache (cropped and
    flipped, never converted to float on the host); :func:`to_unit_range` turns a batch
    into the networks' [-1, 1] floats on the training device."""

    def __init__(
        self,
        sensor: np.ndarray | ConcatFrames,
        normal: np.ndarray | ConcatFrames,
        crop_size: int,
        train: bool,
        sensor_rows: np.ndarray | None = None,
        normal_rows: np.ndarray | None = None,
    ) -> None:
        # ``*_rows`` select rows of (memory-mapped) cache arrays without copying them.
        self.sensor, self.normal = sensor, normal
        self.sensor_rows = np.arange(len(sensor)) if sensor_rows is None else np.asarray(sensor_rows)
        self.normal_rows = np.arange(len(normal)) if normal_rows is None else np.asarray(normal_rows)
        if len(self.sensor_rows) == 0 or len(self.normal_rows) == 0:
            raise ValueError("both domains need at least one frame; raise `fraction` or add recordings")
        self.crop_size, self.train = crop_size, train

    def __len__(self) -> int:
        return max(len(self.sensor_rows), len(self.normal_rows))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = self.sensor[self.sensor_rows[i % len(self.sensor_rows)]]
        if self.train:
            j = int(torch.randint(0, len(self.normal_rows), (1,)))
        else:
            j = i % len(self.normal_rows)
        n = self.normal[self.normal_rows[j]]
        return {"sensor": self._item(s), "normal": self._item(n)}

    def _item(self, frame: np.ndarray) -> torch.Tensor:
        chw = torch.from_numpy(np.array(frame, copy=True)).permute(2, 0, 1)  # memmap rows are read-only
        return augment(chw, self.crop_size, self.train).contiguous()


def check_sizes(load_size: int, crop_size: int) -> None:
    """The crop sizes the networks and the video writer can use (raises
    :class:`DataSettingsError` naming the options)."""
    if crop_size > load_size:
        raise DataSettingsError(f"data.crop_size ({crop_size}) must not exceed data.load_size ({load_size})")
    if load_size % 2:
        raise DataSettingsError(f"data.load_size ({load_size}) must be even: cleaned crops are written as H.264 video")
    if crop_size % 4:
        raise DataSettingsError(f"data.crop_size ({crop_size}) must be a multiple of 4 (two stride-2 stages)")


def check_domain_sizes(subject: Subject, fraction: float) -> None:
    """Each domain must yield :data:`MIN_FRAMES_PER_DOMAIN` sampled frames; checked from
    the videos' headers before a cache, a logger folder or a config file is written."""
    for domain in DOMAINS:
        recs = subject.by_condition(domain)
        total = sum(probe(r.path).frame_count for r in recs)
        drawn = sample_size(total, fraction)
        if drawn < MIN_FRAMES_PER_DOMAIN:
            raise ManifestError(
                f"{subject.manifest_path}: the {domain} recordings {[r.name for r in recs]} have {total} "
                f"frame(s); data.fraction {fraction} draws {drawn}, but training needs at least "
                f"{MIN_FRAMES_PER_DOMAIN} per domain (one to train, one to validate): raise "
                "--data.fraction or add longer recordings"
            )


class FramesDataModule(pl.LightningDataModule):
    """One subject's training frames, or a population's.

    Args:
        manifest: the subject's manifest (YAML/JSON). ``--data.manifest PATH`` points any
            config at another subject. A list of manifests (ours) trains one population
            model on all their subjects: each subject's frames are sampled, cached and
            split as for its own fit, then pooled per domain
            (:mod:`~sensor_removal.training.pool`); fine-tune it per subject with
            ``--model.init_from``. A population checkpoint stores no normal colour
            reference (it belongs to no subject; see :meth:`normal_reference`).
        fraction: share of each domain's frames used for training (paper: 0.02).
        seed: seed of the frame sample and the train/validation split; a resumed run
            draws the same frames.
        load_size: side of the cached crop (paper: 286).
        crop_size: side of the random training crop (paper: 256); also the resolution
            the cleaner runs the generator at.
        val_fraction: share of the sampled frames held out for validation (paper: 0.1).
        batch_size: images per domain per step (the paper and CycleGAN use 1). An epoch
            is still one pass over the training frames (``len / batch_size`` steps), so
            ``max_epochs`` and the lr schedule keep their meaning; the CLI passes this
            value to the model, whose ``lr_scaling`` adapts the learning rate.
        num_workers: DataLoader worker processes.
        cache_dir: where frame caches live; default ``<manifest folder>/.frame_cache`` (per
            subject, for a list of manifests).
        decode_workers: videos decoded in parallel while building the cache.
    """

    def __init__(
        self,
        manifest: str | list[str],
        fraction: UnitShare = 0.02,
        seed: int = 0,
        load_size: PositiveInt = 286,
        crop_size: PositiveInt = 256,
        val_fraction: HalfOpenShare = 0.1,
        batch_size: PositiveInt = 1,
        num_workers: NonNegativeInt = 2,
        cache_dir: str | None = None,
        decode_workers: PositiveInt = 2,
    ) -> None:
        super().__init__()
        # Plain numbers in the checkpoint's hyper-parameters (the CLI passes the range types).
        fraction, val_fraction, seed = float(fraction), float(val_fraction), int(seed)
        load_size, crop_size, batch_size = int(load_size), int(crop_size), int(batch_size)
        num_workers, decode_workers = int(num_workers), int(decode_workers)
        check_sizes(load_size, crop_size)
        for name, value, ok in (
            ("fraction", fraction, 0.0 < fraction <= 1.0),
            ("val_fraction", val_fraction, 0.0 <= val_fraction < 1.0),
        ):
            if not ok:
                raise DataSettingsError(
                    f"data.{name} must be in {'(0, 1]' if name == 'fraction' else '[0, 1)'}, got {value}"
                )
        self.save_hyperparameters(logger=False)  # the CLI logs the full config (cli.RunConfig)
        # Validate once, at construction: a bad manifest stops the CLI before any work.
        paths = manifest_list(manifest)
        self.subjects = tuple(load_manifest(p) for p in paths)
        self.pooled = not isinstance(manifest, str)
        #: The (first) subject; a population fit has several (``subjects``).
        self.subject = self.subjects[0]
        for subject in self.subjects:
            check_domain_sizes(subject, fraction)
        self.cache_roots = [
            Path(cache_dir) if cache_dir else s.manifest_path.parent / ".frame_cache" for s in self.subjects
        ]
        self.cache_root = self.cache_roots[0]
        self.cache: AnyCache | None = None
        self._splits: dict[str, dict[str, np.ndarray]] = {}
        self._reference: dict[str, torch.Tensor] | None = None

    @property
    def _hp(self) -> AttributeDict:
        """``hparams`` as ``save_hyperparameters`` stores them (Lightning types it more widely)."""
        hp = self.hparams
        assert isinstance(hp, AttributeDict)
        return hp

    def prepare_data(self) -> None:
        """Build the frame cache (Lightning calls this on one process per node)."""
        self._build()

    def _build(self) -> AnyCache:
        hp = self._hp
        caches = [
            build_frame_cache(s, root, hp.fraction, hp.seed, hp.load_size, hp.decode_workers)
            for s, root in zip(self.subjects, self.cache_roots, strict=True)
        ]
        return pool_caches(caches, DOMAINS) if self.pooled else caches[0]

    def _caches(self) -> tuple[FrameCache, ...]:
        assert self.cache is not None
        return self.cache.caches if isinstance(self.cache, PooledCache) else (self.cache,)

    def setup(self, stage: str | None = None) -> None:
        if self.cache is not None:
            return
        self.cache = self._build()  # found on disk: decodes nothing
        for domain in DOMAINS:
            # Each subject's own split (as its single-subject fit draws it), then pooled.
            sizes = [len(c.frames[domain]) for c in self._caches()]
            seed = domain_seed(self._hp.seed, domain) + 1
            splits = [split_train_val(n, self._hp.val_fraction, seed) for n in sizes]
            self._splits[domain] = {
                "train": pool_splits([t for t, _ in splits], sizes),
                "val": pool_splits([v for _, v in splits], sizes),
            }

    def frames(self, domain: Domain, split: Literal["train", "val"]) -> np.ndarray:
        """The cached uint8 crops ``(N, load, load, 3)`` of ``domain`` in ``split``."""
        if self.cache is None:
            self.setup()
        assert self.cache is not None
        return np.asarray(self.cache.frames[domain][self._splits[domain][split]])

    def normal_reference(self, count: int = NORMAL_REFERENCE_FRAMES) -> dict[str, torch.Tensor] | None:
        """The normal domain's colour reference for the checkpoint
        (:data:`~sensor_removal.core.checkpoint.NORMAL_REFERENCE_KEY`): ``frames``, ``count``
        frames spread evenly over the subject's normal recordings, ``(K, D, D, 3)`` uint8,
        cut at :func:`~sensor_removal.core.reference.reference_size` of the crop the cleaner
        feeds the generator (``load_size``) — finer than the training crops, which is what
        the ``reference`` mask needs to count covered sub-pixels. The same layout as
        ``NormalReference.state()`` of the cleaning package (which this layer does not
        import). About 60 decodes, once per fit.

        None for a population fit (a list of manifests): the reference is one subject's
        colours, and a population model belongs to none; the per-subject fine-tune that
        starts from it (``--model.init_from``) stores its own subject's reference."""
        if self.pooled:
            return None
        if self._reference is None:
            normal = self.subject.by_condition("normal")
            size = reference_size(int(self._hp.load_size), [rec.bbox for rec in normal])
            frames = reference_crops(normal, size, count)
            self._reference = {"frames": torch.from_numpy(np.ascontiguousarray(frames, dtype=np.uint8))}
        return self._reference

    def heldout_frames(self, domain: Domain, n: int) -> np.ndarray:
        """``n`` extra frames of ``domain`` drawn (seeded, uniformly) from the frames
        *outside* the training sample, as ``(n, load, load, 3)`` uint8 crops. They let a
        validation FID use a full set of frames (the paper's N = 128) where the
        validation split (10 % of a 2 % sample) is smaller. Decoded on each call. A
        population's ``n`` are spread evenly over its subjects."""
        if self.cache is None:
            self.setup()
        caches = self._caches()
        parts = [
            self._heldout(subject, cache, domain, k)
            for subject, cache, k in zip(self.subjects, caches, share(n, len(caches)), strict=True)
            if k > 0
        ]
        size = self._hp.load_size
        return np.concatenate(parts) if parts else np.empty((0, size, size, 3), np.uint8)

    def _heldout(self, subject: Subject, cache: FrameCache, domain: Domain, n: int) -> np.ndarray:
        """:meth:`heldout_frames` of one subject and its cache."""
        recs = sorted((r for r in subject.recordings if r.condition == domain), key=lambda r: r.name)
        taken = {(ref.recording, ref.frame) for ref in cache.refs[domain]}
        pool = [(r, f) for r in recs for f in range(probe(r.path).frame_count) if (r.name, f) not in taken]
        if not pool:
            return np.empty((0, self._hp.load_size, self._hp.load_size, 3), np.uint8)
        rng = np.random.default_rng(domain_seed(self._hp.seed, domain) + 2)
        pick = sorted(rng.choice(len(pool), size=min(n, len(pool)), replace=False))
        parts = []
        for r in recs:
            frames = [pool[i][1] for i in pick if pool[i][0] is r]
            if frames:
                parts.append(decode_crops(r, frames, self._hp.load_size))
        return np.concatenate(parts)

    def _dataset(self, split: Literal["train", "val"]) -> UnpairedFrames:
        if self.cache is None:
            self.setup()
        assert self.cache is not None
        return UnpairedFrames(
            self.cache.frames["sensor"],
            self.cache.frames["normal"],
            self._hp.crop_size,
            split == "train",
            sensor_rows=self._splits["sensor"][split],
            normal_rows=self._splits["normal"][split],
        )

    def _loader(self, split: Literal["train", "val"]) -> DataLoader:
        workers = self._hp.num_workers
        return DataLoader(
            self._dataset(split),
            batch_size=self._hp.batch_size,
            shuffle=split == "train",
            num_workers=workers,
            persistent_workers=workers > 0,
            # Page-locked host batches let Lightning's host-to-GPU copy run non-blocking
            # (it passes non_blocking=True for CUDA targets).
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("val")
