"""Shared fixtures (keep them general: any test module may use them).

* ``torch_home`` — an empty temporary ``TORCH_HOME`` (``$TORCH_HOME/hub/checkpoints``
  exists, nothing in it): the no-weights machine.
* ``fake_torch_weights`` — the same with stand-in LPIPS (AlexNet) and FID (Inception-v3)
  weights under their real file names, so ``lpips.LPIPS`` and torchmetrics /
  torch-fidelity load them through their real code, offline (docs/weights.md). The
  files are written once per session and linked into each test's ``TORCH_HOME``.
* ``tiny_subject`` — a small 2-session subject on disk (manifest + lossless videos) and
  its cleaned-recordings manifest; see :class:`TinySubject`.
* ``synthetic_subject`` — the built-in synthetic subject, tiny (with ground truth and
  masks); :func:`write_cleaned_recordings` adds stand-in cleaned videos for it.
* ``single_thread`` — one torch thread for the test (small networks on busy machines).

Stand-in weights: random, of the right names and shapes. AlexNet's ``features`` are
random (what LPIPS uses); its classifier (unused by LPIPS, 58 M of its 61 M parameters)
is saved as broadcast zeros so the file stays ~10 MB instead of 233 MB. Inception's convs
get He-normal weights so its features do not collapse to ~0 (torch's default init does),
which lets FID tests see non-trivial values; they are still meaningless as numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import yaml

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def write_fake_alexnet(path: Path, seed: int = 0) -> Path:
    """A torchvision AlexNet state dict (random ``features``, zero classifier) at ``path``."""
    import torchvision

    torch.manual_seed(seed)
    sd = torchvision.models.alexnet(weights=None).state_dict()
    small = {
        k: (v if k.startswith("features") else torch.zeros(1, dtype=v.dtype).expand(v.shape)) for k, v in sd.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(small, path)
    return path


def write_fake_inception(path: Path, seed: int = 0) -> Path:
    """A random state dict of torch-fidelity's ``FeatureExtractorInceptionV3`` at ``path``
    (the architecture is built with its weight loading stubbed out; He-normal convs)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    class _Architecture(fe.FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # the constructor loads; skip it here
            return None

    torch.manual_seed(seed)
    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}):
        model = _Architecture("stand-in", ["2048"])
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def single_thread():
    """Run the test with one intra-op torch thread (restored afterwards). Tiny tensors
    gain nothing from threads, and on a busy 2-core machine OpenMP's spinning makes small
    convolutions 10-40x slower with 2 threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fake_weight_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stand-in weight files, written once per session: ``{file name: path}``."""
    root = tmp_path_factory.mktemp("fake_weights")
    return {
        ALEXNET_FILE: write_fake_alexnet(root / ALEXNET_FILE),
        INCEPTION_FILE: write_fake_inception(root / INCEPTION_FILE),
    }


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``TORCH_HOME`` for this test; returns ``$TORCH_HOME/hub/checkpoints``."""
    home = tmp_path / "torch_home"
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return ckpt


@pytest.fixture
def fake_torch_weights(torch_home: Path, fake_weight_store: dict[str, Path]) -> Path:
    """``TORCH_HOME`` with stand-in LPIPS and FID weights; returns the checkpoints dir."""
    for name, src in fake_weight_store.items():
        os.symlink(src, torch_home / name)
    return torch_home


# ------------------------------------------------------------------------ tiny subject


@dataclass
class TinySubject:
    """Paths and layout of :func:`tiny_subject`.

    Two sessions; per session one normal and one sensor video, plus the cleaned version
    of each sensor video (in ``cleaned/``, at crop size, bbox the full frame). Videos are
    ``size`` (w, h) at ``fps``; each recording's segments are listed in ``segments``.
    """

    root: Path
    manifest: Path
    cleaned: Path
    fps: float
    frames: dict[str, np.ndarray]  # recording name -> all its frames (lossless)
    segments: dict[str, dict[str, list[float]]]
    bbox: list[int]
    crop: int


def _frames(n: int, w: int, h: int, seed: int, bright: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(20, 200, size=(h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
    base = np.kron(base, np.ones((8, 8, 1)))[:h, :w]
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        f = base + bright
        f[:, (2 * i) % w] = 255.0  # a moving line: frames differ
        out[i] = np.clip(f, 0, 255).astype(np.uint8)
    return out


def make_tiny_subject(root: Path, fps: float = 10.0, size: tuple[int, int] = (48, 40), crop: int = 32) -> TinySubject:
    """Write the tiny subject under ``root`` (see :class:`TinySubject`)."""
    from sensor_removal.core.video import crop_resize, write_video

    w, h = size
    bbox = [8, 4, 32, 32]
    root.mkdir(parents=True, exist_ok=True)
    (root / "cleaned").mkdir(exist_ok=True)
    # Session 2 has shifted segment boundaries and one more frame, so per-video frame
    # ranges differ between videos.
    seg = {
        1: {"schaede": [0.0, 1.0], "sentence": [1.0, 1.6], "emotion": [1.6, 2.4]},
        2: {"schaede": [0.2, 1.2], "sentence": [1.2, 2.0], "emotion": [2.0, 2.5]},
    }
    counts = {1: 24, 2: 25}
    recs, clean_recs, frames, segments = [], [], {}, {}
    for k in (1, 2):
        for j, cond in enumerate(("normal", "sensor")):
            name = f"s{k}_{cond}"
            fr = _frames(counts[k], w, h, seed=10 * k + j, bright=0 if cond == "normal" else 40)
            if cond == "sensor":
                fr[:, 10:20, 14:30] = 250  # a white "electrode" patch inside the bbox
            write_video(root / f"{name}.mp4", fr, fps=fps, codec="h264-lossless")
            frames[name] = fr
            segments[name] = seg[k]
            recs.append(
                {"name": name, "path": f"{name}.mp4", "session": k, "condition": cond, "bbox": bbox, "segments": seg[k]}
            )
            if cond == "sensor":
                cname = f"{name}_clean"
                cl = np.stack([crop_resize(f, tuple(bbox), crop) for f in frames[f"s{k}_normal"][: counts[k]]])
                write_video(root / "cleaned" / f"{cname}.mp4", cl, fps=fps, codec="h264-lossless")
                frames[cname] = cl
                segments[cname] = seg[k]
                clean_recs.append(
                    {
                        "name": cname,
                        "path": f"{cname}.mp4",
                        "session": k,
                        "condition": "clean",
                        "bbox": [0, 0, crop, crop],
                        "segments": seg[k],
                        "source": name,
                    }
                )
    manifest = root / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({"subject": "tiny01", "recordings": recs}, sort_keys=False))
    cleaned = root / "cleaned" / "manifest.yaml"
    cleaned.write_text(yaml.safe_dump({"subject": "tiny01", "recordings": clean_recs}, sort_keys=False))
    return TinySubject(root, manifest, cleaned, fps, frames, segments, bbox, crop)


@pytest.fixture
def tiny_subject(tmp_path: Path) -> TinySubject:
    """A tiny 2-session subject with cleaned recordings (see :class:`TinySubject`)."""
    return make_tiny_subject(tmp_path / "subject")


# ------------------------------------------------------------------- synthetic subject


def write_cleaned_recordings(manifest: Path, out_dir: Path, size: int = 32, source: str = "ground_truth") -> Path:
    """Stand-in *cleaned* videos for every sensor recording of ``manifest``: the bbox crop
    (``crop_resize`` to ``size``) of its ``ground_truth`` (``source="ground_truth"``: a
    perfect cleaning) or of the sensor video itself (``source="sensor"``: no cleaning),
    written lossless, plus their manifest (``condition: clean``, ``source:``), as the
    clean step writes them. Returns the cleaned manifest's path."""
    from sensor_removal.core.manifest import load_manifest
    from sensor_removal.core.video import crop_resize, iter_frames, probe, write_video

    subject = load_manifest(manifest, check_videos=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    recs = []
    for r in subject.by_condition("sensor"):
        src = r.ground_truth if source == "ground_truth" else r.path
        fps = probe(r.path).fps
        frames = [crop_resize(f, r.bbox, size) for _, f in iter_frames(src)]
        name = f"{r.name}_clean"
        write_video(out_dir / f"{name}.mp4", frames, fps=fps, codec="h264-lossless")
        recs.append(
            {
                "name": name,
                "path": f"{name}.mp4",
                "session": r.session,
                "condition": "clean",
                "bbox": [0, 0, size, size],
                "segments": {k: list(v) for k, v in r.segments.items()},
                "source": r.name,
            }
        )
    path = out_dir / "manifest.yaml"
    path.write_text(yaml.safe_dump({"subject": subject.subject, "recordings": recs}, sort_keys=False))
    return path


@pytest.fixture
def synthetic_subject(tmp_path: Path) -> Path:
    """The built-in synthetic subject, tiny (64x64 px, 12 frames at 8 fps): its manifest."""
    from sensor_removal.synthetic import make_subject

    return make_subject(tmp_path / "synthetic", seconds=1.5, fps=8.0, size=(64, 64), seed=0)
