"""Pixel fidelity against the ground truth (synthetic data: the same frames without sensors).

Real recordings have no sensor-free ground truth, which is why the paper evaluates with
distributions (LPIPS, FID) and facial analysis. Synthetic subjects
(:mod:`sensor_removal.synthetic`) do have one, so here the cleaning is measured directly:
PSNR and SSIM of cleaned crops against ground-truth crops, over the whole crop and inside
the sensor mask (where the generator had to invent skin), with the sensor video itself
as the "no cleaning" row.

* Crops: ground truth and sensor frames are cut with the sensor recording's bbox by
  :func:`sensor_removal.core.video.crop_resize` to the cleaned video's size (the cleaned video
  is already the crop: bbox ``[0, 0, s, s]``); the mask (``load_mask``, full frame) is
  cut with the same bbox and area-resampled (:func:`crop_mask`: at least half covered).
* PSNR per frame with data range 255 (``inf`` for identical frames); inside the mask, the
  MSE is taken over the masked pixels. SSIM: torchmetrics (Gaussian 11×11, σ 1.5) per
  frame on RGB; inside the mask, the mean of the SSIM map over masked pixels. Frames
  with an empty mask do not enter the mask rows. Values are means over frames per
  segment (and ``whole``); ``n`` counts the frames.
* Every video is decoded once, sequentially, in lockstep.

Extensions (ours, for compositing, :mod:`sensor_removal.cleaning.mask`): the region ``outside``
(the complement of the true mask: what the sensors did not touch and a cleaning should
leave as recorded); kind ``repaint`` when the cleaned video was composited and the full
repaint was kept next to it (``NAME.repaint.mp4``), so S, full repaint and composited C
are compared on the same frames; and ``flicker`` / ``mask`` (:func:`evaluation.metrics.temporal.flicker`
inside the true sensor area of both frames, 8-bit levels; lower is steadier), and — when
the composited video's mask was kept (``NAME.mask.mp4``) — how well the estimated mask
(at 0.5) finds the true one: ``iou`` / ``precision`` / ``recall``, feature ``mask``, kind
``clean``, per frame with sensors, then averaged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from evaluation.metrics.temporal import flicker
from evaluation.pairs import SEGMENTS, frame_range
from sensor_removal.core.manifest import Recording, Subject
from sensor_removal.core.video import crop_resize, iter_frames, probe, sibling_path

METRICS: tuple[str, ...] = ("psnr", "ssim", "flicker")
#: Scores of the estimated compositing mask against the true sensor mask (ours).
MASK_SCORES: tuple[str, ...] = ("iou", "precision", "recall")
REGIONS: tuple[str, ...] = ("whole", "mask", "outside")
#: Kinds of ground-truth rows: no cleaning, the full repaint (when kept), the cleaned video.
GT_KINDS: tuple[str, ...] = ("sensor", "repaint", "clean")


class GroundTruthError(ValueError):
    """Ground-truth files do not fit their recording; the message names file and field."""


def _stream(path: Path, expect: int) -> Iterator[np.ndarray]:
    for _, frame in iter_frames(path, expect_count=expect):
        yield frame


def crop_mask(mask: np.ndarray, bbox: Sequence[int], size: int) -> np.ndarray:
    """Cut ``bbox`` out of a full-frame bool mask ``(H, W)`` and resize it to
    ``size``×``size``: a crop pixel is inside when sensors cover at least half of the
    frame pixels it is made of (area resampling, as :func:`crop_resize` resamples the
    image; nearest-neighbour would keep or drop a thin cable by where it happens to
    fall)."""
    x, y, w, h = (int(v) for v in bbox)
    crop: np.ndarray = mask[y : y + h, x : x + w].astype(np.float32)
    if crop.shape != (size, size):
        shrink = w >= size and h >= size
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return crop >= 0.5


def mask_scores(estimated: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    """Per frame of bool masks ``(B, S, S)``: IoU, precision (the share of the estimated
    mask that is sensor) and recall (the share of the sensor the estimate covers); NaN on
    frames whose true mask is empty."""
    e, t = estimated.reshape(len(estimated), -1), true.reshape(len(true), -1)
    tp = (e & t).sum(1).astype(np.float64)
    est, tru = e.sum(1).astype(np.float64), t.sum(1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = {
            "iou_mask": tp / (est + tru - tp),
            "precision_mask": np.where(est > 0, tp / est, 0.0),
            "recall_mask": tp / tru,
        }
    return {k: np.where(tru > 0, v, np.nan) for k, v in scores.items()}


@torch.no_grad()
def frame_scores(target: np.ndarray, pred: np.ndarray, mask: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per-frame PSNR/SSIM of uint8 ``pred`` vs ``target`` ``(B, S, S, 3)``, whole,
    inside ``mask`` ``(B, S, S)`` and outside it (NaN where a region is empty)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    t = torch.from_numpy(np.ascontiguousarray(target)).permute(0, 3, 1, 2).double()
    p = torch.from_numpy(np.ascontiguousarray(pred)).permute(0, 3, 1, 2).double()
    sq = (t - p).square().mean(dim=1)  # (B, S, S), mean over channels
    with np.errstate(divide="ignore"):
        mse = sq.flatten(1).mean(1).numpy()
        out = {"psnr_whole": 10 * np.log10(255.0**2 / mse)}
    ssim_mean, ssim_map = structural_similarity_index_measure(
        p.float(), t.float(), data_range=255.0, return_full_image=True, reduction="none"
    )
    out["ssim_whole"] = ssim_mean.double().numpy()
    if mask is not None:
        smap = ssim_map.double().mean(dim=1)
        inside = torch.from_numpy(np.ascontiguousarray(mask)).double()
        for region, m in (("mask", inside), ("outside", 1.0 - inside)):
            count = m.flatten(1).sum(1)
            with np.errstate(divide="ignore", invalid="ignore"):
                mse_m = ((sq * m).flatten(1).sum(1) / count).numpy()
                out[f"psnr_{region}"] = np.where(count.numpy() > 0, 10 * np.log10(255.0**2 / mse_m), np.nan)
                out[f"ssim_{region}"] = np.where(
                    count.numpy() > 0, ((smap * m).flatten(1).sum(1) / count).numpy(), np.nan
                )
    return out


def evaluate_recording(
    sensor: Recording,
    clean: Recording | None,
    crop_size: int | None = None,
    segments: Sequence[str] = SEGMENTS,
    subject: str = "",
    batch_size: int = 16,
    repaint: Path | None = None,
) -> list[dict]:
    """Rows (tidy dicts) for one sensor recording with ``ground_truth``: kind ``sensor``
    (the sensor video, no cleaning), if ``clean`` is given kind ``clean`` and if
    ``repaint`` (the full repaint next to a composited ``clean``) kind ``repaint``;
    metrics ``psnr``/``ssim``, feature ``whole``/``mask``/``outside``, and
    ``flicker``/``mask`` (mask and outside rows need ``sensor.mask``).

    ``crop_size`` defaults to the cleaned video's width; without a cleaned video it must
    be given."""
    if sensor.ground_truth is None:
        raise GroundTruthError(f"recording {sensor.name!r}: field 'ground_truth' is not set")
    info = probe(sensor.path)
    gt_info = probe(sensor.ground_truth)
    n = info.frame_count
    if gt_info.frame_count != n or (gt_info.width, gt_info.height) != (info.width, info.height):
        raise GroundTruthError(
            f"{sensor.ground_truth}: recording {sensor.name!r}, field 'ground_truth': {gt_info.frame_count} frames of "
            f"{gt_info.width}x{gt_info.height}, the video has {n} of {info.width}x{info.height}"
        )
    if repaint is not None and clean is None:
        raise GroundTruthError(
            f"{repaint}: recording {sensor.name!r}: a repaint is compared only next to its cleaned video"
        )
    if repaint is not None:
        r_info = probe(repaint)
        if r_info.frame_count != n:
            raise GroundTruthError(
                f"{repaint}: recording {sensor.name!r}: {r_info.frame_count} frames, its source has {n}"
            )
    if clean is not None:
        c_info = probe(clean.path)
        if c_info.width != c_info.height:
            raise GroundTruthError(
                f"{clean.path}: recording {clean.name!r}: cleaned video is not square ({c_info.width}x{c_info.height})"
            )
        if c_info.frame_count != n:
            raise GroundTruthError(
                f"{clean.path}: recording {clean.name!r}: {c_info.frame_count} frames, "
                f"its source {sensor.name!r} has {n}"
            )
        if crop_size is not None and crop_size != c_info.width:
            raise GroundTruthError(
                f"{clean.path}: crop size {crop_size} requested, the cleaned video is {c_info.width} px"
            )
        crop_size = c_info.width
    if crop_size is None:
        raise GroundTruthError(f"recording {sensor.name!r}: no cleaned video; give the crop size")
    mask = None
    if sensor.mask is not None:
        from sensor_removal.synthetic import load_mask

        mask = load_mask(sensor.mask)
        if mask.shape != (n, info.height, info.width):
            raise GroundTruthError(
                f"{sensor.mask}: recording {sensor.name!r}, field 'mask': shape {list(mask.shape)}, the video is "
                f"{[n, info.height, info.width]} (frames, height, width)"
            )

    estimated = None if clean is None else sibling_path(clean.path, "mask")
    if estimated is not None and (mask is None or not estimated.is_file()):
        estimated = None
    if estimated is not None and probe(estimated).frame_count != n:
        raise GroundTruthError(
            f"{estimated}: recording {sensor.name!r}: {probe(estimated).frame_count} mask frames, its source has {n}"
        )
    kinds = [("sensor", sensor.name, sensor.path)]
    if repaint is not None:
        assert clean is not None  # a repaint without its cleaned video is refused above
        kinds.append(("repaint", f"{clean.name}:repaint", repaint))
    if clean is not None:
        kinds.append(("clean", clean.name, clean.path))
    scores: dict[str, dict[str, list[np.ndarray]]] = {k: {} for k, _, _ in kinds}
    streams = {"gt": _stream(sensor.ground_truth, n)} | {kind: _stream(path, n) for kind, _, path in kinds}
    if estimated is not None:
        streams["estimated"] = _stream(estimated, n)
    bbox = sensor.bbox
    last: dict[str, np.ndarray] = {}  # the previous frame's crops (and mask), for flicker
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        crops: dict[str, list[np.ndarray]] = {key: [] for key in streams}
        for _ in range(start, stop):
            for key, it in streams.items():
                frame = next(it)
                crops[key].append(
                    frame if key in ("clean", "repaint", "estimated") else crop_resize(frame, bbox, crop_size)
                )
        m = None if mask is None else np.stack([crop_mask(mask[i], bbox, crop_size) for i in range(start, stop)])
        target = np.stack(crops["gt"])
        for kind, _, _ in kinds:
            for key, v in frame_scores(target, np.stack(crops[kind]), m).items():
                scores[kind].setdefault(key, []).append(v)
        if m is not None and "estimated" in crops:
            for key, v in mask_scores(np.stack(crops["estimated"])[..., 0] >= 128, m).items():
                scores["clean"].setdefault(key, []).append(v)
        if m is not None:
            for kind, _, _ in kinds:
                values = np.full(stop - start, np.nan)
                for j in range(stop - start):
                    if j or last:
                        prev = {k: (crops[k][j - 1] if j else last[k]) for k in (kind, "gt")}
                        region = m[j] | (m[j - 1] if j else last["true_mask"])
                        values[j] = flicker(prev[kind], crops[kind][j], prev["gt"], crops["gt"][j], region)
                scores[kind].setdefault("flicker_mask", []).append(values)
            last = {k: v[-1] for k, v in crops.items()} | {"true_mask": m[-1]}
    for it in streams.values():  # finish the generators (closes the captures)
        for _ in it:
            pass

    rows = []
    gt_name = f"{sensor.name}:ground_truth"
    for segment in segments:
        rng = frame_range(sensor, segment, info)
        if rng is None:
            continue
        a, b = rng
        for kind, name, _ in kinds:
            for key, parts in scores[kind].items():
                metric, region = key.split("_")
                v = np.concatenate(parts)[a:b]
                valid = v[~np.isnan(v)]
                rows.append(
                    {
                        "subject": subject,
                        "session": str(sensor.session),
                        "segment": segment,
                        "kind": kind,
                        "reference": gt_name,
                        "other": name,
                        "metric": metric,
                        "feature": region,
                        "value": float(valid.mean()) if valid.size else float("nan"),
                        "std": float(valid.std(ddof=1))
                        if valid.size > 1 and np.isfinite(valid).all()
                        else float("nan"),
                        "n": int(valid.size),
                    }
                )
    return rows


def evaluate_subject(
    subject: Subject,
    cleaned: Subject | None,
    segments: Sequence[str] = SEGMENTS,
    crop_size: int | None = None,
    batch_size: int = 16,
) -> list[dict]:
    """Ground-truth rows for every sensor recording of ``subject`` that has
    ``ground_truth`` (with its cleaned version from ``cleaned`` where present, and the
    full repaint ``<cleaned>.repaint.mp4`` next to it where that exists)."""
    clean_by_source = {} if cleaned is None else {c.source: c for c in cleaned.recordings if c.condition == "clean"}
    rows: list[dict] = []
    for rec in subject.by_condition("sensor"):
        if rec.ground_truth is None:
            continue
        clean = clean_by_source.get(rec.name)
        repaint = None if clean is None else sibling_path(clean.path, "repaint")
        rows += evaluate_recording(
            rec,
            clean,
            crop_size=crop_size,
            segments=segments,
            subject=subject.subject,
            batch_size=batch_size,
            repaint=repaint if repaint is not None and repaint.is_file() else None,
        )
    return rows
