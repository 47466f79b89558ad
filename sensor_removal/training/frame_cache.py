"""The training frames on disk: which frames are drawn (paper Sec. 3.2: a uniformly random
share of each domain), and the uint8 cache of their crops that every epoch and every later
run of the subject reads instead of decoding the videos again.

The cache is keyed by what decides its contents (the recordings' identities, the share,
the seed, the load size), built under a file lock by one process while the others wait,
written under a temporary name and renamed when complete, and checked against the sizes
and digests its ``index.json`` recorded before it is reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from filelock import FileLock

from sensor_removal.core.manifest import Recording, Subject, output_path
from sensor_removal.core.video import VideoError, crop_resize, iter_frames, probe

log = logging.getLogger(__name__)

Domain = Literal["sensor", "normal"]
DOMAINS: tuple[Domain, ...] = ("sensor", "normal")


class FrameCacheError(RuntimeError):
    """The frame cache cannot be written (full disk, permissions); names the folder."""


#: Bump when the cache layout or the crop changes, so stale caches are not reused.
#: (2: ``index.json`` records each array's size and BLAKE2b digest.)
CACHE_VERSION = 2


@dataclass(frozen=True)
class FrameRef:
    """One sampled frame: which recording, which frame."""

    recording: str
    frame: int


def sample_size(total: int, fraction: float) -> int:
    """Frames drawn from a domain of ``total`` frames: ``fraction`` of them, at least one."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, int(round(fraction * total))) if total > 0 else 0


def sample_frames(frame_counts: dict[str, int], fraction: float, seed: int) -> list[FrameRef]:
    """Draw a uniformly random, seeded ``fraction`` of all frames of one domain.

    The frames of all the domain's recordings form one pool (paper Sec. 3.2: 2 % of the
    frames, random so that blinks are not missed by a fixed stride). At least one frame is
    drawn. The result is sorted by recording then frame, ready for one sequential decode
    pass per video. The same counts, fraction and seed always give the same frames.
    """
    names = sorted(frame_counts)
    sizes = np.array([frame_counts[n] for n in names], dtype=np.int64)
    total = int(sizes.sum())
    if total <= 0:
        return []
    k = sample_size(total, fraction)
    rng = np.random.default_rng(seed)
    flat = np.sort(rng.choice(total, size=k, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    which = np.searchsorted(starts, flat, side="right") - 1
    return [FrameRef(names[w], int(f - starts[w])) for w, f in zip(which, flat, strict=True)]


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` into train and validation indices (paper: 90 / 10).
    Keeps at least one training item, and one validation item when n >= 2."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(val_fraction * n))
    if n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def domain_seed(seed: int, domain: Domain) -> int:
    """Independent, reproducible stream per domain derived from the run's seed."""
    return int(np.random.SeedSequence([seed, DOMAINS.index(domain)]).generate_state(1)[0])


def _file_identity(path: Path) -> dict[str, object]:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key(subject: Subject, fraction: float, seed: int, load_size: int, frame_counts: dict[str, int]) -> str:
    """Key of a frame cache: the manifest's content (recordings, bboxes, video files) and
    the sampling parameters. Anything that changes the cached pixels changes the key."""
    doc = {
        "version": CACHE_VERSION,
        "subject": subject.subject,
        "recordings": [
            {
                "name": r.name,
                "condition": r.condition,
                "bbox": list(r.bbox),
                "video": _file_identity(r.path),
                "frames": frame_counts[r.name],
            }
            for r in subject.recordings
            if r.condition in DOMAINS
        ],
        "fraction": fraction,
        "seed": seed,
        "load_size": load_size,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


def decode_crops(rec: Recording, frames: list[int], load_size: int) -> np.ndarray:
    """Decode ``frames`` of ``rec`` in one sequential pass, crop with the bbox and resize
    to ``load_size``. Returns ``(len(frames), load_size, load_size, 3)`` uint8."""
    out = np.empty((len(frames), load_size, load_size, 3), dtype=np.uint8)
    pos = {f: i for i, f in enumerate(frames)}
    done = 0
    for index, frame in iter_frames(rec.path, frames):
        out[pos[index]] = crop_resize(frame, rec.bbox, load_size)
        done += 1
    if done != len(frames):
        raise VideoError(f"{rec.path}: decoded {done} of the {len(frames)} sampled frames of recording {rec.name!r}")
    return out


@dataclass(frozen=True)
class FrameCache:
    """The cached crops of one subject: per domain an ``(N, S, S, 3)`` uint8 array
    (memory-mapped) and the :class:`FrameRef` of each row."""

    path: Path
    frames: dict[Domain, np.ndarray]
    refs: dict[Domain, list[FrameRef]]


def build_frame_cache(
    subject: Subject,
    cache_root: Path,
    fraction: float,
    seed: int,
    load_size: int,
    workers: int = 2,
) -> FrameCache:
    """Sample, decode and store the training frames of ``subject`` unless an identical
    cache already exists (then nothing is decoded). Writes into a temporary folder that
    is renamed into place when complete, so an interrupted build leaves no cache.

    A cache found on disk is used only after :func:`frame_cache_problem` finds it whole
    (truncated, missing, zeroed or edited files, an unreadable ``index.json``); otherwise
    it is rebuilt under the lock, with one warning saying why."""
    recs = [r for r in subject.recordings if r.condition in DOMAINS]
    counts = {r.name: probe(r.path).frame_count for r in recs}
    key = cache_key(subject, fraction, seed, load_size, counts)
    final = output_path(cache_root, f"{subject.subject}-{key}")
    if final.exists() and frame_cache_problem(final) is None:
        return load_frame_cache(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FrameCacheError(f"{final.parent}: cannot create the frame cache folder ({exc.strerror or exc})") from None
    # One builder per cache: DDP ranks on several nodes and sweep tasks of the same subject
    # start together; the first takes the lock and decodes, the others wait and reuse it.
    # The lock file is removed afterwards; every holder re-checks index.json under the lock,
    # so at worst a failed build is retried twice, and the rename keeps any cache whole.
    lock = final.parent / f"{final.name}.lock"
    try:
        with FileLock(str(lock)):
            if final.exists():
                problem = frame_cache_problem(final)
                if problem is None:  # another process built it while we waited
                    return load_frame_cache(final)
                log.warning("frame cache %s: %s; rebuilding it", final, problem)
                _remove_cache(final)
            return _write_frame_cache(recs, counts, final, fraction, seed, load_size, workers, subject)
    finally:
        lock.unlink(missing_ok=True)


def _write_frame_cache(
    recs: list[Recording],
    counts: dict[str, int],
    final: Path,
    fraction: float,
    seed: int,
    load_size: int,
    workers: int,
    subject: Subject,
) -> FrameCache:
    """Decode the sampled frames into a temporary folder and rename it to ``final``."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as exc:
        raise FrameCacheError(f"{final.parent}: cannot create the frame cache folder ({exc.strerror or exc})") from None
    try:
        by_name = {r.name: r for r in recs}
        refs: dict[str, list[FrameRef]] = {}
        jobs: list[tuple[str, Recording, list[int]]] = []
        for domain in DOMAINS:
            domain_counts = {r.name: counts[r.name] for r in recs if r.condition == domain}
            refs[domain] = sample_frames(domain_counts, fraction, domain_seed(seed, domain))
            for name in sorted(domain_counts):
                wanted = [ref.frame for ref in refs[domain] if ref.recording == name]
                if wanted:
                    jobs.append((domain, by_name[name], wanted))
        # Videos decode independently; OpenCV releases the GIL, so threads overlap them.
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            crops = list(pool.map(lambda job: decode_crops(job[1], job[2], load_size), jobs))
        for domain in DOMAINS:
            parts = [c for (d, _, _), c in zip(jobs, crops, strict=True) if d == domain]
            arr = np.concatenate(parts) if parts else np.empty((0, load_size, load_size, 3), np.uint8)
            np.save(tmp / f"{domain}.npy", arr)
        index = {
            "files": {d: _file_record(tmp / f"{d}.npy") for d in DOMAINS},
            "subject": subject.subject,
            "manifest": str(subject.manifest_path),
            "fraction": fraction,
            "seed": seed,
            "load_size": load_size,
            "refs": {d: [[r.recording, r.frame] for r in refs[d]] for d in DOMAINS},
        }
        (tmp / "index.json").write_text(json.dumps(index))
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same cache first
            if not (final / "index.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FrameCacheError(
            f"{final}: cannot write the frame cache ({exc.strerror or exc}); free disk space or point "
            "--data.cache_dir at another disk"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("frame cache written: %s", final)
    return load_frame_cache(final)


def _file_record(path: Path) -> dict[str, object]:
    digest = hashlib.blake2b()
    with open(path, "rb") as f:  # in chunks (``hashlib.file_digest`` needs Python 3.11)
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "blake2b": digest.hexdigest()}


def frame_cache_problem(path: Path) -> str | None:
    """What is wrong with the frame cache folder ``path``, or None when every array has
    the size and BLAKE2b digest its ``index.json`` recorded at build time. The digest
    reads each file once (a fraction of a second for a paper-size cache), which also
    catches damage that keeps the size, such as zeroed blocks."""
    path = Path(path)
    try:
        index = json.loads((path / "index.json").read_text())
    except FileNotFoundError:
        return "index.json is missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"index.json is unreadable ({type(exc).__name__})"
    files = index.get("files") if isinstance(index, dict) else None
    if not isinstance(files, dict) or not isinstance(index.get("refs"), dict):
        return "index.json lacks the file records (written by another version)"
    for domain in DOMAINS:
        npy, want = path / f"{domain}.npy", files.get(domain)
        if not isinstance(want, dict) or not npy.is_file():
            return f"{npy.name} is missing"
        size = npy.stat().st_size
        if size != want.get("bytes"):
            return f"{npy.name} has {size} bytes, {want.get('bytes')} when built"
        if _file_record(npy)["blake2b"] != want.get("blake2b"):
            return f"{npy.name} has other content than when built (checksum differs)"
    return None


def _remove_cache(path: Path) -> None:
    """Remove a damaged cache folder, or a file standing where the folder should be."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError as exc:
        raise FrameCacheError(f"{path}: damaged frame cache cannot be removed ({exc.strerror or exc})") from None


def load_frame_cache(path: Path) -> FrameCache:
    index = json.loads((Path(path) / "index.json").read_text())
    frames = {d: np.load(Path(path) / f"{d}.npy", mmap_mode="r") for d in DOMAINS}
    refs = {d: [FrameRef(n, int(f)) for n, f in index["refs"][d]] for d in DOMAINS}
    return FrameCache(path=Path(path), frames=frames, refs=refs)
