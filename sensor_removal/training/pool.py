"""Several subjects' training frames as one pool per domain (ours: a population warm start).

Training each of many subjects from scratch costs the full schedule per subject. A
*population* model trained once on several subjects' frames and then fine-tuned per
subject (``fit --model.init_from POPULATION.ckpt``) needs a shorter schedule per subject.
``--data.manifest [A, B, ...]`` asks for such a population fit.

Each subject's frames are sampled and cached exactly as for a single-subject fit (its
own cache, its own key), so a population fit and the later per-subject fits share the
caches. The pooling only *indexes* the per-subject arrays (memory-mapped): nothing is
copied, whatever the number of subjects. This module knows nothing about how caches are
built; :class:`~sensor_removal.training.data.FramesDataModule` hands it the arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from sensor_removal.core.errors import UserError


class PoolSettingsError(UserError):
    """A list of manifests that cannot form a pool; the message names ``data.manifest``."""


def manifest_list(manifest: str | Sequence[str]) -> list[str]:
    """``data.manifest`` as a list of paths: one path, or a non-empty list of distinct
    paths (the same subject twice would weigh it double without saying so)."""
    if isinstance(manifest, str):
        return [manifest]
    paths = [str(m) for m in manifest]
    if not paths:
        raise PoolSettingsError("data.manifest: the list of manifests is empty; give at least one path")
    seen: set[str] = set()
    for p in paths:
        if p in seen:
            raise PoolSettingsError(f"data.manifest: {p} is listed twice; list each subject's manifest once")
        seen.add(p)
    return paths


class ConcatFrames:
    """Rows of several ``(N_i, S, S, 3)`` arrays read as one ``(sum N_i, S, S, 3)`` array,
    without copying them: ``len``, ``shape``, an int row or an index array (rows in the
    order asked). What :class:`~sensor_removal.training.data.UnpairedFrames` and
    ``FramesDataModule.frames`` need of a cache array."""

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        if not parts:
            raise ValueError("ConcatFrames needs at least one array")
        tails = {tuple(p.shape[1:]) for p in parts}
        if len(tails) != 1:
            raise ValueError(f"ConcatFrames: arrays of different frame shapes {sorted(tails)}")
        self.parts = tuple(parts)
        self.starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        self.shape = (int(self.starts[-1]), *next(iter(tails)))
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def _locate(self, row: int) -> tuple[int, int]:
        if not -len(self) <= row < len(self):
            raise IndexError(f"row {row} out of range for {len(self)} pooled frames")
        row %= len(self)
        part = int(np.searchsorted(self.starts, row, side="right") - 1)
        return part, row - int(self.starts[part])

    def __getitem__(self, index: int | np.integer | np.ndarray | Sequence[int]) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            part, row = self._locate(int(index))
            return self.parts[part][row]
        rows = np.asarray(index, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        for i, r in enumerate(rows):
            part, row = self._locate(int(r))
            out[i] = self.parts[part][row]
        return out

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)


class SubjectCache(Protocol):
    """What pooling needs of one subject's frame cache (``data.FrameCache``)."""

    @property
    def path(self) -> Path: ...
    @property
    def frames(self) -> Mapping[Any, np.ndarray]: ...  # keyed by domain name


CacheT = TypeVar("CacheT", bound=SubjectCache)


@dataclass(frozen=True)
class PooledCache(Generic[CacheT]):
    """The frame caches of a population fit: each subject's cache, and per domain their
    rows read as one array."""

    caches: tuple[CacheT, ...]
    frames: dict[str, ConcatFrames]

    @property
    def paths(self) -> list[Path]:
        return [c.path for c in self.caches]


def pool_caches(caches: Sequence[CacheT], domains: Sequence[str]) -> PooledCache[CacheT]:
    """Several subjects' caches as one, per domain, in the order given."""
    frames = {d: ConcatFrames([c.frames[d] for c in caches]) for d in domains}
    return PooledCache(caches=tuple(caches), frames=frames)


def pool_splits(splits: Sequence[np.ndarray], sizes: Sequence[int]) -> np.ndarray:
    """Per-subject row indices (each subject's own train or validation split, drawn as for
    a single-subject fit) as rows of the pooled array of subjects of ``sizes`` rows. Each
    subject keeps its share of validation frames; one subject gives its split unchanged."""
    if len(splits) != len(sizes):
        raise ValueError(f"{len(splits)} splits for {len(sizes)} subjects")
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    parts = [np.asarray(s, dtype=np.int64) + o for s, o in zip(splits, offsets, strict=True)]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def share(n: int, parts: int) -> list[int]:
    """``n`` items spread over ``parts`` subjects as evenly as possible (the first ones get
    one more): how many held-out frames each subject of a pool contributes."""
    return [len(a) for a in np.array_split(np.arange(max(0, n)), parts)]
