"""Where the sensors are, found without labels, and the composite that keeps the rest.

**Our extension, not the paper's method.** The paper (Büchner et al., VISAPP 2023) hands
G_S→N(S) — a repaint of the whole face crop — to facial analysis. But electrodes,
cables and swabs cover only part of the crop; everywhere else the sensor video was
recorded correctly, and a repaint there only adds blur, texture and colour shifts. So:

1. :func:`change_map` — per pixel, how much the generator changed the frame, after
   removing the generator's *global* colour/brightness drift (a robust per-channel
   gain + offset fit of G(S) onto S; pixels the generator really repainted are outliers
   of that fit and are excluded from it). Units: 8-bit levels, max over channels.
2. :class:`SensorMasker` — threshold that map, clean it with morphology (close small
   gaps, fill enclosed holes such as an electrode's inner ring, dilate by a few pixels
   to cover the halo) and feather it outwards with a linear ramp; frame by frame, with
   **temporal hysteresis**: a pixel that was sensor in the previous frame stays sensor
   while its change exceeds ``hysteresis × threshold``, so a cable edge whose change
   hovers around the threshold does not blink on and off.
3. :func:`composite` — ``M·G(S) + (1 − M)·S``; where ``M`` is exactly 0 the output *is* the
   input byte for byte.

A second method, ``method="reference"`` (:class:`NormalReference`), adds what the change
map cannot see when the generator repaints the whole face: the subject's own *normal*
recordings (the other domain of the unpaired training data) show which colours each
crop position takes without sensors; a sensor pixel has a colour none of them shows
there. Its soft mask is the larger of two ramps — colour novelty against the normal
frames, and the change map from ``threshold`` to twice that.

Sizes (close, dilate, feather) are fractions of the crop side so one setting fits the
demo's 72-px crops and the paper's 286-px crops alike; defaults were chosen on the
built-in synthetic subject, whose true masks are known (``docs/compositing.md``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from sensor_removal.core.reference import DEFAULT_DETAIL, reference_crops, reference_size

if TYPE_CHECKING:
    import torch

    from sensor_removal.core.manifest import Recording

#: ``MaskSettings.method`` choices.
MaskMethod = Literal["change", "reference"]

__all__ = [
    "MaskSettings",
    "NormalReference",
    "SensorMasker",
    "change_map",
    "composite",
    "composite_detail",
    "composite_subpixel",
    "fine_delta",
    "iou",
    "match_colours",
    "reference_size",
]


@dataclass(frozen=True)
class MaskSettings:
    """How a sensor mask is cut from the change between S and G_S→N(S).

    Args:
        threshold: change (8-bit levels, after removing global colour drift, max over
            RGB) above which a pixel counts as sensor.
        hysteresis: a pixel that was sensor in the previous frame stays sensor while its
            change is above ``hysteresis · threshold`` (1 disables the temporal smoothing).
        close: closing kernel, fraction of the crop side (bridges gaps along cables).
        dilate: dilation radius, fraction of the crop side (covers the sensor's halo).
        feather: width of the outward linear ramp from 1 to 0, fraction of the crop side.
        max_hole: enclosed holes up to this fraction of the crop area are filled (the
            inside of an electrode ring; larger enclosed areas, e.g. skin between
            crossing cables, stay).
        blur: σ of the Gaussian smoothing of the change map, fraction of the crop side
            (suppresses single noisy pixels before thresholding).
        method: ``change`` — the thresholded change map with morphology (above);
            ``reference`` — a soft mask, the larger of the colour novelty against the
            subject's normal recordings ramped from 0 to ``novelty`` and the change map
            ramped from ``threshold`` to ``2·threshold`` (:class:`NormalReference`).
        novelty: ``reference`` only — colour distance (8-bit levels, max over RGB) to
            the nearest normal-recording colour at which a pixel is fully sensor.
        window: ``reference`` only — how far (pixels) a normal-recording colour may lie
            from the pixel and still explain it (small head motion).
        rank: ``reference`` only — novelty is the distance to the ``rank``-th closest
            reference colour, not the closest (:meth:`NormalReference.novelty`).
        detail: ``reference`` only — the mask is cut on crops up to ``detail`` × the crop
            side (never finer than the recording's bbox; :func:`reference_size`) and
            reduced to the crop by area, so each pixel's mask says how much of it a
            sensor covers (1: at the crop's own resolution).
        coverage: ``reference`` only — the covered fraction of a crop pixel at which the
            mask reaches 0.5 (the ramp runs from ``coverage − 0.2`` to ``coverage + 0.2``).
        temporal: ``reference`` only — also keep the previous frame's mask (the larger
            of the two).
        change_cue: ``reference`` only — also take in the change map, ramped from
            ``threshold`` to ``2·threshold``.
        subpixel: ``reference`` only — composite at the finer cut
            (:func:`composite_subpixel`): each crop pixel takes the generator's colour for
            exactly the part a sensor covers, so a cable thinner than a crop pixel leaves no
            trace; off: :func:`composite` with the ramped mask. On by default (ours, measured
            on the synthetic subject: docs/compositing.md).
        grow: ``reference`` with ``subpixel`` only — dilate the fine mask by this many
            fine pixels before compositing (the anti-aliased rim of a drawn sensor).
    """

    threshold: float = 40.0
    hysteresis: float = 0.6
    close: float = 0.03
    dilate: float = 0.02
    feather: float = 0.02
    blur: float = 0.006
    max_hole: float = 0.003
    method: MaskMethod = "change"
    novelty: float = 12.0
    window: int = 0
    rank: int = 1
    detail: float = DEFAULT_DETAIL
    coverage: float = 0.4
    temporal: bool = False
    change_cue: bool = False
    subpixel: bool = True
    grow: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("change", "reference"):
            raise ValueError(f"MaskSettings: method must be 'change' or 'reference', got {self.method!r}")
        if self.novelty <= 0:
            raise ValueError(f"MaskSettings: novelty must be > 0, got {self.novelty}")
        if not 0 <= self.window <= 8:
            raise ValueError(f"MaskSettings: window must be in [0, 8] pixels, got {self.window}")
        if self.detail < 1:
            raise ValueError(f"MaskSettings: detail must be >= 1 (a multiple of the crop side), got {self.detail}")
        if not 0.2 <= self.coverage <= 0.8:
            raise ValueError(f"MaskSettings: coverage must be in [0.2, 0.8], got {self.coverage}")
        if not 0 <= self.grow <= 4:
            raise ValueError(f"MaskSettings: grow must be in [0, 4] fine pixels, got {self.grow}")
        if self.rank < 1:
            raise ValueError(f"MaskSettings: rank must be >= 1, got {self.rank}")
        if self.threshold <= 0:
            raise ValueError(f"MaskSettings: threshold must be > 0, got {self.threshold}")
        if not 0 < self.hysteresis <= 1:
            raise ValueError(f"MaskSettings: hysteresis must be in (0, 1], got {self.hysteresis}")
        for name in ("close", "dilate", "feather", "blur", "max_hole"):
            if not 0 <= getattr(self, name) < 0.5:
                raise ValueError(f"MaskSettings: {name} must be in [0, 0.5), got {getattr(self, name)}")

    def pixels(self, fraction: float, size: int) -> int:
        """A fractional size on a crop of side ``size``, in whole pixels."""
        return int(round(fraction * size))


def match_colours(source: np.ndarray, target: np.ndarray, keep: float = 0.6, rounds: int = 2) -> np.ndarray:
    """``source`` (float32 ``(H, W, 3)``) mapped per channel by the gain and offset that
    best fit it onto ``target``, estimated robustly: start from the median offset (gain
    1), then ``rounds`` times refit by least squares on the ``keep`` fraction of pixels
    with the smallest residuals (the pixels the generator did not repaint). The gain is
    held within [0.5, 2]: a drift, not a new image."""
    out = np.empty_like(source)
    for c in range(3):
        x = source[..., c].ravel().astype(np.float64)
        y = target[..., c].ravel().astype(np.float64)
        gain, offset = 1.0, float(np.median(y - x))
        for _ in range(rounds):
            resid = np.abs(gain * x + offset - y)
            sel = resid <= np.quantile(resid, keep)
            xs, ys = x[sel], y[sel]
            var = xs.var()
            gain = 1.0 if var < 1e-6 else float(np.clip(((xs - xs.mean()) * (ys - ys.mean())).mean() / var, 0.5, 2.0))
            offset = float(ys.mean() - gain * xs.mean())
        out[..., c] = (gain * source[..., c] + offset).astype(np.float32)
    return out


def change_map(sensor: np.ndarray, cleaned: np.ndarray, blur_sigma: float = 0.0) -> np.ndarray:
    """Per-pixel change ``(H, W)`` float32 in 8-bit levels between the uint8 sensor crop
    and the generator's output, robust to a global colour/brightness drift of the output
    (:func:`match_colours`); max over channels, optionally Gaussian-smoothed."""
    s = sensor.astype(np.float32)
    g = match_colours(cleaned.astype(np.float32), s)
    d = np.abs(g - s).max(axis=-1)
    if blur_sigma > 0:
        d = cv2.GaussianBlur(d, (0, 0), blur_sigma)
    return d


def _fill_holes(binary: np.ndarray, max_area: int) -> np.ndarray:
    """Set every enclosed background region (not touching the border) of at most
    ``max_area`` pixels: an electrode's inner ring, not the skin between two cables."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((1 - binary).astype(np.uint8), connectivity=4)
    h, w = binary.shape
    out = binary.copy()
    for k in range(1, n):
        x, y, bw, bh, area = stats[k]
        if area <= max_area and x > 0 and y > 0 and x + bw < w and y + bh < h:
            out[labels == k] = 1
    return out


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _ramp(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """0 at or below ``low``, 1 at or above ``high``, linear between."""
    return np.clip((x - low) / (high - low), 0.0, 1.0).astype(np.float32)


class NormalReference:
    """The colours the subject's normal recordings show at each position of the face crop.

    ``frames`` ``(K, H, W, 3)`` uint8: crops of normal-recording frames, cut like the
    sensor crops (same crop size). :meth:`novelty` of a sensor crop is, per pixel, the
    distance to the closest colour any of the K frames shows within ``window`` pixels —
    small where the pixel looks like the face or background without sensors, large on an
    electrode or a cable. This assumes what the paper's recordings share: the same camera,
    lighting and framing for the sensor and the normal sessions of a subject.

    ``device``: where the comparisons run (the cleaner passes its own, so on a GPU the
    mask keeps pace with the generator); the padded reference is built there once per
    window size.
    """

    def __init__(self, frames: np.ndarray, device: str | None = None) -> None:
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise ValueError(f"NormalReference: need (K, H, W, 3) frames with K >= 1, got shape {frames.shape}")
        self.frames = np.ascontiguousarray(frames, dtype=np.uint8)
        self.device = device or "cpu"
        self._padded: dict[int, object] = {}  # window -> (K, 3, H + 2w, W + 2w) int16 tensor

    @property
    def size(self) -> int:
        """Side of the reference crops: the resolution the ``reference`` mask is cut at."""
        return int(self.frames.shape[1])

    def _reference(self, window: int):
        import torch

        if window not in self._padded:
            ref = torch.from_numpy(self.frames).to(self.device).permute(0, 3, 1, 2).float()
            self._padded[window] = torch.nn.functional.pad(ref, (window,) * 4, mode="replicate").to(torch.int16)
        return self._padded[window]

    @classmethod
    def from_recordings(
        cls, recordings: Sequence[Recording], crop_size: int, count: int = 60, device: str | None = None
    ) -> NormalReference:
        """``count`` frames spread evenly over the normal recordings, cropped to ``crop_size``."""
        try:
            return cls(reference_crops(recordings, crop_size, count), device)
        except ValueError as exc:
            raise ValueError(f"NormalReference: {exc}") from None

    def novelty(self, frame: np.ndarray, window: int = 1, rank: int = 1) -> np.ndarray:
        """``(H, W)`` float32: per pixel of the uint8 crop ``frame``, the max-over-RGB
        distance (8-bit levels) to the ``rank``-th closest of the reference colours within
        ``window`` pixels (``K·(2·window+1)²`` candidates). ``rank`` 1 is the closest; a
        higher rank ignores the few reference frames that happen to show a similar colour
        there (an eyebrow passing by), so a cable edge blended with skin still stands out.
        A rank above the number of candidates means the farthest candidate."""
        import torch

        h, w = frame.shape[:2]
        if self.frames.shape[1:3] != (h, w):
            raise ValueError(f"NormalReference: reference crops are {self.frames.shape[1:3]}, frame is {(h, w)}")
        candidates = len(self.frames) * (2 * window + 1) ** 2
        if rank < 1:
            raise ValueError(f"NormalReference: rank must be >= 1, got {rank}")
        rank = min(rank, candidates)
        ref = self._reference(window)
        x = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).permute(2, 0, 1).to(torch.int16)[None]
        spans = range(2 * window + 1)
        d = torch.cat([(ref[:, :, dy : dy + h, dx : dx + w] - x).abs().amax(dim=1) for dy in spans for dx in spans])
        return d.topk(rank, dim=0, largest=False).values[-1].cpu().numpy().astype(np.float32)

    def state(self) -> dict[str, torch.Tensor]:
        """The reference as plain CPU tensors, for a checkpoint that
        ``torch.load(weights_only=True)`` reads back (:meth:`from_state`): the reference
        travels with the model. The padded copies are caches and are rebuilt."""
        import torch

        return {"frames": torch.from_numpy(self.frames.copy())}

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor], source: str, device: str | None = None) -> NormalReference:
        """The reference that :meth:`state` wrote, read from ``source`` (named in every
        error: the checkpoint). Raises ``ValueError`` for a state that is not a reference."""
        import torch

        frames = state.get("frames") if isinstance(state, Mapping) else None
        if not isinstance(frames, torch.Tensor):
            raise ValueError(f"{source}: normal reference has no 'frames' tensor")
        try:
            return cls(frames.detach().cpu().numpy(), device=device)
        except ValueError as exc:
            raise ValueError(f"{source}: normal reference does not load: {exc}") from None


class SensorMasker:
    """Soft sensor masks for the consecutive frames of one video.

    Call it on each ``(sensor, cleaned)`` pair of uint8 ``(H, W, 3)`` crops in frame
    order; it returns the feathered mask ``(H, W)`` float32 in [0, 1]. It keeps the
    previous frame's hard mask for the hysteresis; :meth:`reset` before another video.
    ``core`` of the last call is the hard mask before dilation (what IoU is measured on).
    """

    def __init__(self, settings: MaskSettings = MaskSettings(), reference: NormalReference | None = None) -> None:
        if settings.method == "reference" and reference is None:
            raise ValueError(
                "mask method 'reference' needs the subject's normal recordings (a NormalReference); "
                "clean a subject's manifest, or use mask method 'change'"
            )
        self.settings = settings
        self.reference = reference if settings.method == "reference" else None
        self.previous: np.ndarray | None = None
        self.core: np.ndarray | None = None
        self.fine: np.ndarray | None = None  # ``subpixel``: the last fine mask, (D, D) float32

    def reset(self) -> None:
        self.previous = None
        self.fine = None

    @property
    def fine_size(self) -> int | None:
        """The side of the fine cut the sub-pixel composite works at (None: no fine cut)."""
        if self.reference is None or not self.settings.subpixel:
            return None
        return self.reference.size

    def hard(self, sensor: np.ndarray, cleaned: np.ndarray) -> np.ndarray:
        """The binary mask ``(H, W)`` uint8 after threshold (with hysteresis), closing and
        hole filling, before dilation and feathering."""
        st = self.settings
        size = min(sensor.shape[:2])
        d = change_map(sensor, cleaned, st.blur * size)
        binary: np.ndarray = (d > st.threshold).astype(np.uint8)
        if self.previous is not None and self.previous.shape == binary.shape and st.hysteresis < 1:
            binary |= (self.previous.astype(bool) & (d > st.hysteresis * st.threshold)).astype(np.uint8)
        r = st.pixels(st.close, size) // 2
        if r > 0:
            binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, _disk(r))
        binary = _fill_holes(binary, int(round(st.max_hole * size * size)))
        self.previous = binary
        self.core = binary
        return binary

    def soften(self, binary: np.ndarray) -> np.ndarray:
        """Dilate ``binary`` and feather it outwards: 1 on the dilated mask, a linear ramp
        to 0 over ``feather`` pixels, exactly 0 beyond."""
        st = self.settings
        size = min(binary.shape)
        r = st.pixels(st.dilate, size)
        if r > 0:
            binary = cv2.dilate(binary, _disk(r))
        f = st.pixels(st.feather, size)
        if f <= 0 or not binary.any():
            return binary.astype(np.float32)
        dist = cv2.distanceTransform((1 - binary).astype(np.uint8), cv2.DIST_L2, 3)
        return np.clip(1.0 - dist / (f + 1.0), 0.0, 1.0).astype(np.float32)

    def referenced(self, sensor: np.ndarray, cleaned: np.ndarray, detail: np.ndarray | None = None) -> np.ndarray:
        """``method="reference"``: the sensor coverage of each crop pixel, found at the
        reference's finer resolution and ramped to a soft mask.

        ``detail`` is the same frame cut at the reference's size
        (:attr:`NormalReference.size`, up to ``detail`` × the crop side); without it the
        crop is upsampled, which loses what the finer cut sees. At that size a pixel is
        sensor when its :meth:`NormalReference.novelty` exceeds ``novelty``; the fraction of
        such pixels inside each crop pixel (area reduction, as the true masks are reduced)
        is its *coverage*, and the mask ramps from 0 at ``coverage − 0.2`` to 1 at
        ``coverage + 0.2``. Why: at the model's resolution an electrode's rim or a cable
        covers part of a pixel, and one threshold on the blended colour either drops thin
        cables or takes in a ring of intact skin; counting covered sub-pixels does
        neither. No morphology — the ramp is already soft, and a dilation would hand
        recorded pixels to the repaint.

        ``change_cue`` adds the change map ramped from ``threshold`` to ``2·threshold``
        (what the generator repainted), ``temporal`` the larger of this and the previous
        frame's mask (fewer blinks, more skin repainted); both off by default, as they
        cost precision on the synthetic subject's true masks (docs/compositing.md)."""
        st = self.settings
        assert self.reference is not None
        h, w = sensor.shape[:2]
        size = self.reference.size
        if detail is None:
            detail = sensor if size == h else cv2.resize(sensor, (size, size), interpolation=cv2.INTER_LINEAR)
        elif detail.shape[:2] != (size, size):
            raise ValueError(f"SensorMasker: detail crop is {detail.shape[:2]}, the reference is {(size, size)}")
        fine = (self.reference.novelty(detail, st.window, st.rank) > st.novelty).astype(np.float32)
        if st.subpixel:
            self.fine = cv2.dilate(fine, _disk(st.grow)) if st.grow > 0 else fine
        cover = fine if size == h else cv2.resize(fine, (w, h), interpolation=cv2.INTER_AREA)
        mask = _ramp(cover, st.coverage - 0.2, st.coverage + 0.2)
        if st.change_cue:
            chg = _ramp(change_map(sensor, cleaned, st.blur * min(h, w)), st.threshold, 2.0 * st.threshold)
            mask = np.maximum(mask, chg)
        out = mask
        if st.temporal and self.previous is not None and self.previous.shape == mask.shape:
            out = np.maximum(mask, self.previous)
        self.previous = mask
        self.core = (out >= 0.5).astype(np.uint8)
        return out

    def __call__(self, sensor: np.ndarray, cleaned: np.ndarray, detail: np.ndarray | None = None) -> np.ndarray:
        if self.reference is not None:
            return self.referenced(sensor, cleaned, detail)
        return self.soften(self.hard(sensor, cleaned))


def composite(sensor: np.ndarray, cleaned: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``M·G(S) + (1 − M)·S`` for uint8 images ``(..., H, W, 3)`` and a mask ``(..., H, W)``
    in [0, 1]; rounded to uint8. Where ``M == 0`` the result equals ``sensor`` exactly."""
    s = sensor.astype(np.float32)
    out = s + mask[..., None].astype(np.float32) * (cleaned.astype(np.float32) - s)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def fine_delta(cleaned: np.ndarray, fine: np.ndarray, detail: np.ndarray) -> np.ndarray:
    """``F·(up(G) − S_D)`` float32 ``(D, D, 3)``: what the generator's crop ``cleaned``
    (upsampled to the fine size) changes on the covered fine pixels of ``detail`` (the
    frame cut at the fine size, ``fine`` its binary sensor mask); 0 elsewhere."""
    d = detail.shape[0]
    up = cv2.resize(cleaned, (d, d), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return fine[..., None] * (up - detail.astype(np.float32))


def composite_subpixel(
    sensor: np.ndarray, cleaned: np.ndarray, fine: np.ndarray, detail: np.ndarray, detailed: np.ndarray | None = None
) -> np.ndarray:
    """The composite done at the finer cut of the ``reference`` mask and reduced to the crop.

    ``sensor``/``cleaned`` uint8 ``(H, W, 3)`` crops, ``detail`` the same frame cut at the
    fine size ``(D, D, 3)`` and ``fine`` its binary sensor mask ``(D, D)``. Output:
    ``S + area(F·(X − S_D))`` with ``X`` the fine composite ``detailed``
    (:func:`composite_detail`, what the pipeline passes) or, without it, the generator's
    crop upsampled — in each crop pixel the fill replaces the recording's colour for
    exactly the covered fine pixels. Why: at the crop's resolution a cable covering a third
    of a pixel leaves a third of its colour under any mask value below 1, and a mask of 1
    repaints the two thirds of skin; at the fine cut neither happens. Where no fine pixel of
    a crop pixel is covered the output is ``sensor`` byte for byte.
    """
    h, w = sensor.shape[:2]
    if detailed is None:
        delta = fine_delta(cleaned, fine, detail)
    else:
        delta = fine[..., None] * (detailed.astype(np.float32) - detail.astype(np.float32))
    down = cv2.resize(delta, (w, h), interpolation=cv2.INTER_AREA)
    cover = cv2.resize(fine, (w, h), interpolation=cv2.INTER_AREA)
    down[cover <= 0] = 0.0
    return np.clip(np.rint(sensor.astype(np.float32) + down), 0, 255).astype(np.uint8)


def composite_detail(detail: np.ndarray, delta: np.ndarray, fine: np.ndarray, thin: float) -> np.ndarray:
    """The composite at the fine size itself (ours), the cleaned face at (up to) the
    recording's resolution.

    ``detail`` the frame cut at the fine size ``(D, D, 3)``, ``fine`` its binary sensor mask,
    ``delta`` their :func:`fine_delta`; ``thin`` the fine pixels per crop pixel (``D / S``).
    Every uncovered fine pixel is the recording's byte for byte. A covered pixel deeper than
    ``thin`` from the nearest uncovered one takes the generator's crop, upsampled
    (``S_D + delta``); one within ``thin`` of it — a cable, an electrode's rim — is filled
    from its uncovered neighbours (``cv2.inpaint``, Telea), ramping to the generator's colour
    over the next 2 fine pixels. Why: a structure thinner than one crop pixel is below what
    the generator can draw, and its upsampled colour lays the cable's ghost back at full
    contrast (dlib then finds fewer faces), while the skin on either side is right there at
    full resolution (measured on the synthetic subject: docs/compositing.md)."""
    base = detail.astype(np.float32) + delta
    covered = (fine > 0).astype(np.uint8)
    if covered.any():
        depth = cv2.distanceTransform(covered, cv2.DIST_L2, 3)
        near = cv2.inpaint(detail, covered, 3, cv2.INPAINT_TELEA).astype(np.float32)
        w = np.clip((depth - thin) / 2.0, 0.0, 1.0)[..., None]
        base = near + w * (base - near)
        base[covered == 0] = detail[covered == 0]
    return np.clip(np.rint(base), 0, 255).astype(np.uint8)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1 when both are empty)."""
    a, b = a.astype(bool), b.astype(bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
