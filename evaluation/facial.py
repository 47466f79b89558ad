"""Facial analysis with py-feat: one Action Unit / emotion time series per video.

The paper (Büchner et al., VISAPP 2023; its AU and emotion tables) shows that cleaned
videos are usable by running an off-the-shelf facial-analysis tool on normal (N),
sensor (S) and cleaned (C) videos and comparing the per-frame AU and emotion curves
(DTW, MAPE; see ``evaluation.timeseries``). This module produces those curves with
py-feat 2.1.5.

Frames
    Decoded by the project's own reader (:func:`sensor_removal.video.iter_frames`, one
    sequential pass, skipped frames only grabbed) and handed to py-feat as uint8
    ``(N, 3, H, W)`` tensors (``detect(..., data_type="tensor")``). py-feat's own video
    path decodes with torchcodec, which needs system FFmpeg libraries that a pip install
    does not bring.

Output
    :class:`FacialSeries`: a DataFrame indexed by frame number with one column per AU
    (:data:`AU_COLUMNS`, py-feat's names) and per emotion (:data:`EMOTION_COLUMNS`,
    lower case; ``Detectorv2``'s capitalised names are renamed). Frames without a face
    are NaN rows, kept and counted (``no_face_frames``), so that series of different
    videos stay aligned in time. Where several faces are found, the one with the largest
    box is kept (among boxes within 5 % of the largest: the higher detection score). The
    paper drops AU43 (blink, :data:`EXCLUDED_AUS`) from its comparisons; the series keeps
    it and the comparison leaves it out.

Result cache
    The whole video's series (at the configured stride) is cached under
    ``cache_dir/<video stem>-<key>.csv``, written atomically. The key covers the video's
    content (SHA-256 of its size and first and last MiB, so the cache survives moving the
    data), the crop ``bbox``, the model set, the stride, the detection threshold and the
    identity of the weight files (their hub revision and size, so numbers computed with
    other weights — e.g. test stand-ins — are never served). A re-run loads the CSV and
    builds no detector. Frame ranges are sliced from the cached whole-video series.

Weights, offline
    py-feat downloads every model with
    ``hf_hub_download(..., cache_dir=feat.utils.io.get_resource_path())``, i.e. into the
    ``resources`` folder *inside the installed feat package*. Because it passes its own
    ``cache_dir``, ``HF_HOME`` / ``HF_HUB_CACHE`` do **not** move py-feat's weights.
    :func:`feat_cache_dir` says where they are looked for:

    1. an explicit argument (``FacialAnalyzer(weights_dir=...)``,
       ``missing_feat_weights(..., cache_dir=...)``),
    2. else the environment variable ``SENSOR_REMOVAL_FEAT_CACHE``,
    3. else a user cache folder, ``$XDG_CACHE_HOME/sensor-removal/feat`` (by default
       ``~/.cache/sensor-removal/feat``): outside the virtual environment, so recreating
       the venv or upgrading py-feat keeps the downloaded weights. (py-feat's own
       location, ``<site-packages>/feat/resources``, is where it would put them.)

    The folder has the hub cache layout (``models--py-feat--X/refs/main``,
    ``models--py-feat--X/snapshots/<rev>/<file>``). Detector construction and detection
    run inside :func:`feat_hub_offline`, a context manager that (a) switches
    ``huggingface_hub`` to offline mode (what ``HF_HUB_OFFLINE=1`` does; the library
    reads that variable only at import, so the scope sets the flag it was read into),
    so nothing tries the network, and (b) only when the weights folder is not py-feat's
    own, redirects the calls that pass py-feat's resource folder as ``cache_dir`` to the
    configured folder. (b) is done by swapping the ``hf_hub_download`` name that py-feat
    code looks up (``huggingface_hub.hf_hub_download`` and the copies imported into
    ``feat.*`` modules) for a wrapper, and restoring it on exit. This is the narrowest
    mechanism that reaches py-feat's calls: patching ``get_resource_path`` instead
    would also move the non-hub files py-feat ships in that folder. ``Detectorv2``'s
    multitask weights are passed by path (its ``multitask_weights`` argument), which
    also keeps ``FEAT_MULTITASK_WEIGHTS`` from silently substituting another file.
    Missing files raise :class:`FacialWeightsMissing` naming each file and
    ``python -m evaluation fetch-weights --metrics facial`` before any frame is decoded.
    During detection ``Detectorv1`` also looks up its optional head-pose MLP
    (``py-feat/pose_mlp_v2``); offline and absent, pose just stays NaN (unused here).
    The scope changes process-wide names while it is open: don't run other Hugging Face
    downloads in other threads at the same time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import InitVar, asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from evaluation.weights import MissingWeightsError, WeightFile
from sensor_removal.video import atomic_output, iter_frames, probe

log = logging.getLogger(__name__)

#: py-feat's AU columns (``feat.pretrained.AU_LANDMARK_MAP["Feat"]``; Detectorv2's 20-AU
#: head uses the same names). Hard-coded so that importing this module does not import
#: py-feat (~8 s); a test checks them against the installed py-feat.
AU_COLUMNS: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU11", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28", "AU43",
)  # fmt: skip
#: py-feat's (Detectorv1) emotion columns, lower case.
EMOTION_COLUMNS: tuple[str, ...] = (
    "anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral",
)  # fmt: skip
#: The paper leaves AU43 (eyes closed / blink) out of its AU comparisons.
EXCLUDED_AUS: tuple[str, ...] = ("AU43",)
#: Face box of the kept face, original-frame pixels (py-feat's names), and its score.
FACE_COLUMNS: tuple[str, ...] = ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore")

#: Detectorv2's emotion names → ours.
_V2_EMOTIONS = {
    "Anger": "anger", "Disgust": "disgust", "Fear": "fear", "Happy": "happiness",
    "Sad": "sadness", "Surprise": "surprise", "Neutral": "neutral",
}  # fmt: skip

FETCH_COMMAND = "python -m evaluation fetch-weights --metrics facial"
CACHE_ENV = "SENSOR_REMOVAL_FEAT_CACHE"
#: Bump when the cached CSV's meaning changes.
CACHE_VERSION = 1

HubFile = tuple[str, str]  # (Hugging Face repo, file name)

# Which files each py-feat model option loads (read from feat 2.1.5's detector.py,
# detector_v2.py, Retinaface_test.py, multitask/inference.py).
_FACE_FILES: dict[str, tuple[HubFile, ...]] = {
    "retinaface": (("py-feat/retinaface_r34", "model.safetensors"),),
    "img2pose": (("py-feat/img2pose", "config.json"), ("py-feat/img2pose", "model.safetensors")),
}
_LANDMARK_FILES: dict[str, tuple[HubFile, ...]] = {
    "mobilefacenet": (("py-feat/mobilefacenet", "mobilefacenet_model_best.pth.tar"),),
    "mobilenet": (("py-feat/mobilenet", "mobilenet_224_model_best_gdconv_external.pth.tar"),),
    "pfld": (("py-feat/pfld", "pfld_model_best.pth.tar"),),
}
_AU_FILES: dict[str, tuple[HubFile, ...]] = {
    "xgb": (("py-feat/xgb_au", "xgb_au_classifier_v2.skops"),),
    "svm": (("py-feat/svm_au", "svm_au_classifier_v2.skops"),),
}
_EMOTION_FILES: dict[str, tuple[HubFile, ...]] = {
    "resmasknet": (
        ("py-feat/resmasknet", "config.json"),
        ("py-feat/resmasknet", "ResMaskNet_Z_resmasking_dropout1_rot30.pth"),
    ),
    "svm": (("py-feat/svm_emo", "svm_emo_classifier.skops"),),
}
_MULTITASK_FILE: HubFile = ("py-feat/face_multitask_v2", "face_multitask_v28.safetensors")

FaceModel = Literal["retinaface", "img2pose"]
LandmarkModel = Literal["mobilefacenet", "mobilenet", "pfld"]
AUModel = Literal["xgb", "svm"]
EmotionModel = Literal["resmasknet", "svm"]


class FacialWeightsMissing(MissingWeightsError):
    """py-feat weight files are not in the weights folder. The evaluation's
    :class:`~evaluation.weights.MissingWeightsError`, whose message names each file's
    full path and ``python -m evaluation fetch-weights --metrics facial``; ``missing``
    holds the :class:`~evaluation.weights.WeightFile` s, ``weights_dir`` the folder."""

    def __init__(self, model_set: FeatModelSet, weights_dir: Path, missing: Sequence[tuple[str, str, Path]]) -> None:
        self.weights_dir = weights_dir
        files = [
            WeightFile("facial", where, f"py-feat {model_set.detector} model {repo} / {name}")
            for repo, name, where in missing
        ]
        super().__init__(files, ["facial"])


class FacialError(RuntimeError):
    """py-feat returned something this module cannot turn into a series."""


# --------------------------------------------------------------------------- model sets


@dataclass(frozen=True)
class FeatModelSet:
    """Which py-feat detector and models to run (py-feat's own option names).

    ``detector="v1"``: ``Detectorv1(face_model, landmark_model, au_model, emotion_model)``
    (identity and gaze models are off). The paper's two AU models are not in py-feat
    2.x; :data:`AU_MODELS` names the two that stand for them.
    ``detector="v2"``: ``Detectorv2`` (RetinaFace + the multitask model); the
    landmark/AU/emotion names are then ignored and the face model must be RetinaFace.
    """

    detector: Literal["v1", "v2"] = "v1"
    face_model: FaceModel = "retinaface"
    landmark_model: LandmarkModel = "mobilefacenet"
    au_model: AUModel = "xgb"
    emotion_model: EmotionModel = "resmasknet"

    def __post_init__(self) -> None:
        checks = (
            ("detector", self.detector, ("v1", "v2")),
            ("face_model", self.face_model, tuple(_FACE_FILES)),
            ("landmark_model", self.landmark_model, tuple(_LANDMARK_FILES)),
            ("au_model", self.au_model, tuple(_AU_FILES)),
            ("emotion_model", self.emotion_model, tuple(_EMOTION_FILES)),
        )
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"facial analysis: {name}={value!r} is not one of {list(allowed)}")
        if self.detector == "v2" and self.face_model != "retinaface":
            raise ValueError("facial analysis: detector v2 only runs face_model='retinaface'")

    def files(self) -> tuple[HubFile, ...]:
        """The (repo, file) pairs py-feat loads for this model set."""
        if self.detector == "v2":
            return _FACE_FILES["retinaface"] + (_MULTITASK_FILE,)
        return (
            _FACE_FILES[self.face_model]
            + _LANDMARK_FILES[self.landmark_model]
            + _AU_FILES[self.au_model]
            + _EMOTION_FILES[self.emotion_model]
        )

    def describe(self) -> dict[str, str]:
        if self.detector == "v2":
            return {"detector": "v2", "face_model": "retinaface", "multitask": "face_multitask_v2"}
        return asdict(self)


ModelSetLike = FeatModelSet | str

#: The AU models the evaluation can run, by the name ``--au-models`` takes. The paper's
#: Table 2 compares a classical landmark-based model (a random decision forest on 68
#: MobileNet landmarks, 20 AUs) with a deep joint landmark/AU network (JAA-Net, 12 AUs);
#: py-feat 2.x ships neither, but one of each kind: the v1 detector's classical
#: classifier on HOG + landmark features (``xgb``, or ``svm``) and the v2 multitask
#: network (``v2``). ``v1`` is an alias of ``xgb`` (py-feat's v1 default).
AU_MODELS: dict[str, FeatModelSet] = {
    "xgb": FeatModelSet("v1", au_model="xgb"),
    "svm": FeatModelSet("v1", au_model="svm"),
    "v2": FeatModelSet("v2"),
}
#: The evaluation's default: one model of each kind, as in the paper's Table 2.
DEFAULT_AU_MODELS: tuple[str, ...] = ("xgb", "v2")
#: The paper model each AU model stands for, and why (report captions, README).
PAPER_COUNTERPART: dict[str, str] = {
    "xgb": "stands for the paper's random decision forest on landmarks (classical: a tree ensemble on "
    "hand-made HOG + 68-landmark features, the same 20 AUs)",
    "svm": "stands for the paper's random decision forest on landmarks (classical: an SVM on HOG + "
    "68-landmark features, the same 20 AUs)",
    "v2": "stands for the paper's JAA-Net (deep: one network learns landmarks and AUs jointly); it "
    "predicts 20 AUs, a superset of JAA-Net's 12",
}
#: The AUs of the paper's two models (paper Table 2; AU43 is dropped from comparisons).
PAPER_AUS: dict[str, tuple[str, ...]] = {
    "rdf": AU_COLUMNS,
    "jaa-net": ("AU01", "AU02", "AU04", "AU06", "AU07", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24"),
}
#: Which paper model's AU list each of ours is compared against.
PAPER_AU_LIST: dict[str, str] = {"xgb": "rdf", "svm": "rdf", "v2": "jaa-net"}

#: The files py-feat needs for the default v1 and v2 model sets (``fetch-weights``
#: fetches these). Other model options: ``FeatModelSet(...).files()``.
FEAT_WEIGHTS: dict[str, tuple[HubFile, ...]] = {
    "v1": FeatModelSet("v1").files(),
    "v2": FeatModelSet("v2").files(),
}


def _model_set(model_set: ModelSetLike) -> FeatModelSet:
    """A :class:`FeatModelSet` from itself, ``"v1"``/``"v2"`` or an :data:`AU_MODELS` name."""
    if isinstance(model_set, FeatModelSet):
        return model_set
    if model_set == "v1":
        return FeatModelSet(detector="v1")
    if model_set in AU_MODELS:
        return AU_MODELS[model_set]
    raise ValueError(
        f"facial analysis: unknown model set {model_set!r} (use 'v1', one of {', '.join(AU_MODELS)} or a FeatModelSet)"
    )


# --------------------------------------------------------------------------- weights


def feat_package_cache_dir() -> Path:
    """py-feat's own weights folder: ``feat/resources`` inside the installed package
    (what ``feat.utils.io.get_resource_path()`` returns), found without importing feat."""
    spec = importlib.util.find_spec("feat")
    if spec is None or not spec.submodule_search_locations:
        raise FacialError("py-feat is not installed (pip install 'py-feat>=2.1,<2.2')")
    return Path(list(spec.submodule_search_locations)[0]) / "resources"


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sensor-removal/feat`` (``~/.cache/sensor-removal/feat``)."""
    root = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(root).expanduser() / "sensor-removal" / "feat"


def feat_cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The hub-cache folder py-feat weights are read from: ``override`` if given, else
    ``$SENSOR_REMOVAL_FEAT_CACHE``, else :func:`user_cache_dir`. ``HF_HOME`` has no
    effect on py-feat (it passes its own ``cache_dir``); see the module docstring."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return user_cache_dir()


def _resolve(cache: Path, repo_id: str, filename: str) -> tuple[Path | None, Path]:
    """(cached file or None, the path the file has or would have)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache))
    if isinstance(found, str) and Path(found).is_file():
        return Path(found), Path(found)
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    ref = repo_dir / "refs" / "main"
    revision = ref.read_text().strip() if ref.is_file() else "<revision>"
    return None, repo_dir / "snapshots" / revision / filename


def missing_feat_weights(model_set: ModelSetLike = "v1", cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Paths of the weight files of ``model_set`` that are not in the weights folder
    (``feat_cache_dir(cache_dir)``), in hub-cache layout. Empty when all are present.
    Where no revision is recorded yet, the path shows ``snapshots/<revision>/``."""
    cache = feat_cache_dir(cache_dir)
    missing = []
    for repo, name in _model_set(model_set).files():
        found, where = _resolve(cache, repo, name)
        if found is None:
            missing.append(where)
    return missing


def require_feat_weights(model_set: ModelSetLike = "v1", cache_dir: str | os.PathLike | None = None) -> dict[HubFile, Path]:
    """The local path of every weight file of ``model_set``; raises
    :class:`FacialWeightsMissing` (naming each missing file) if any is absent."""
    ms = _model_set(model_set)
    cache = feat_cache_dir(cache_dir)
    paths: dict[HubFile, Path] = {}
    missing = []
    for repo, name in ms.files():
        found, where = _resolve(cache, repo, name)
        if found is None:
            missing.append((repo, name, where))
        else:
            paths[(repo, name)] = found
    if missing:
        raise FacialWeightsMissing(ms, cache, missing)
    return paths


def check_hub_download(path: Path) -> None:
    """Compare a downloaded file with the hash the hub cache names it by.

    ``hf_hub_download`` stores ``snapshots/<rev>/<file>`` as a link to ``blobs/<etag>``,
    where the etag of an LFS file (all model weights) is the SHA-256 of its content and
    that of a small git file the git blob SHA-1. Raises :class:`FacialError` on a
    mismatch (corrupt or replaced file); files that are not such links (a copied cache,
    platforms without symlinks) cannot be checked this way and pass."""
    if not path.is_symlink():
        return
    blob = path.resolve()
    size = blob.stat().st_size
    if len(blob.name) == 64:
        h = hashlib.sha256()
    elif len(blob.name) == 40:
        h = hashlib.sha1(f"blob {size}\0".encode())
    else:
        return
    with open(blob, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    if h.hexdigest() != blob.name:
        raise FacialError(
            f"{path}: content does not match its hub hash {blob.name[:12]}... (corrupt or replaced); "
            f"delete {blob} and {path}, then run `{FETCH_COMMAND}` again"
        )


def fetch_feat_weights(model_set: ModelSetLike = "v1", cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Download the weight files of ``model_set`` into the weights folder with
    ``huggingface_hub`` (needs network; files already there are not downloaded again),
    check each against its hub hash (:func:`check_hub_download`) and return their local
    paths. :func:`verify_feat_weights` then loads them through py-feat's constructors."""
    from huggingface_hub import constants, hf_hub_download

    ms = _model_set(model_set)
    cache = feat_cache_dir(cache_dir)
    if constants.is_offline_mode():
        raise FacialError(
            "cannot fetch py-feat weights: Hugging Face offline mode is on (HF_HUB_OFFLINE=1); "
            "unset it on a machine with network"
        )
    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    for repo, name in ms.files():
        log.info("fetching %s / %s into %s", repo, name, cache)
        path = Path(hf_hub_download(repo_id=repo, filename=name, cache_dir=str(cache)))
        check_hub_download(path)
        paths.append(path)
    still = missing_feat_weights(ms, cache)
    if still:
        raise FacialError(f"downloaded py-feat weights but these are still not in {cache}: {', '.join(map(str, still))}")
    return paths


def verify_feat_weights(model_set: ModelSetLike = "v1", cache_dir: str | os.PathLike | None = None, device: str = "cpu") -> None:
    """Build the py-feat detector from the weights folder, offline, through its real
    loading code (raises on a missing, truncated or mismatched file)."""
    weights_dir = None if cache_dir is None else Path(cache_dir)
    FacialAnalyzer(model_set=model_set, device=device, weights_dir=weights_dir)._build_detector()


@contextlib.contextmanager
def feat_hub_offline(cache_dir: str | os.PathLike | None = None) -> Iterator[Path]:
    """Scope for building and running py-feat detectors: Hugging Face offline mode on,
    and py-feat's ``hf_hub_download(cache_dir=<feat resources>)`` calls redirected to
    ``feat_cache_dir(cache_dir)`` when that differs from py-feat's own folder. Restores
    everything on exit. Yields the weights folder. See the module docstring for why."""
    import huggingface_hub
    from huggingface_hub import constants

    target = feat_cache_dir(cache_dir).resolve()
    default = feat_package_cache_dir().resolve()
    saved_offline, saved_env = constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
    swapped: list[tuple[object, object, bool]] = []  # (module, previous value, was in __dict__)
    try:
        constants.HF_HUB_OFFLINE = True
        os.environ["HF_HUB_OFFLINE"] = "1"
        if target != default:
            original = huggingface_hub.hf_hub_download

            def redirected(*args, **kwargs):
                given = kwargs.get("cache_dir")
                if given is not None and Path(given).resolve() == default:
                    kwargs["cache_dir"] = str(target)
                return original(*args, **kwargs)

            modules = [huggingface_hub] + [
                m for name, m in list(sys.modules.items()) if m is not None and (name == "feat" or name.startswith("feat."))
            ]
            for module in modules:
                if getattr(module, "hf_hub_download", None) is original:
                    swapped.append((module, original, "hf_hub_download" in vars(module)))
                    module.hf_hub_download = redirected
        yield target
    finally:
        for module, previous, was_own in reversed(swapped):
            if was_own or module is not huggingface_hub:
                module.hf_hub_download = previous
            else:
                del module.hf_hub_download
        constants.HF_HUB_OFFLINE = saved_offline
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


def _feat_networks(detector: object) -> list:
    """py-feat's torch networks inside a detector: its registered submodules (landmark,
    emotion, ... models) and the networks its plain-object wrappers hold (e.g.
    RetinaFace's ``net``)."""
    import torch

    nets = list(detector.children()) if isinstance(detector, torch.nn.Module) else []
    for value in vars(detector).values():
        if not isinstance(value, torch.nn.Module) and hasattr(value, "__dict__"):
            nets += [v for v in vars(value).values() if isinstance(v, torch.nn.Module)]
    return nets


def _to_channels_last(detector: object) -> None:
    """NHWC layout for py-feat's networks, in place (only 4-D weights change layout)."""
    import torch

    for net in _feat_networks(detector):
        net.to(memory_format=torch.channels_last)


def _run_networks_in_bf16(detector: object, device_type: str) -> None:
    """Run each of py-feat's networks under bf16 autocast and hand float32 on.

    Autocast cannot wrap ``detect`` as a whole: py-feat turns intermediate tensors into
    numpy arrays (HOG features, landmarks), which bf16 tensors cannot become. So each
    network's ``forward`` (on this instance only) autocasts its own convolutions and
    returns float32 tensors to py-feat's code."""
    import torch
    from torch.utils._pytree import tree_map

    def as_float(x):
        return x.float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x

    for net in _feat_networks(detector):
        forward = net.forward

        def bf16_forward(*args, _forward=forward, **kwargs):
            with torch.autocast(device_type, dtype=torch.bfloat16):
                out = _forward(*args, **kwargs)
            return tree_map(as_float, out)

        net.forward = bf16_forward


# --------------------------------------------------------------------------- series


@dataclass
class FacialSeries:
    """Per-frame AU and emotion values of one video.

    ``values``: index ``frame`` (frame number in the video), columns :data:`AU_COLUMNS` +
    :data:`EMOTION_COLUMNS`; NaN rows where no face was found. ``faces``: same index,
    :data:`FACE_COLUMNS` of the kept face (NaN without a face). ``stride``: every
    ``stride``-th frame was analysed. ``fps``: the video's frame rate.
    """

    values: pd.DataFrame
    faces: pd.DataFrame
    stride: int
    fps: float
    path: Path | None = None

    @property
    def no_face_frames(self) -> int:
        """How many analysed frames had no face (their rows are NaN)."""
        return int(self.faces["FaceRectX"].isna().sum())

    @property
    def frames(self) -> int:
        return len(self.values)

    @property
    def aus(self) -> pd.DataFrame:
        return self.values[list(AU_COLUMNS)]

    @property
    def emotions(self) -> pd.DataFrame:
        return self.values[list(EMOTION_COLUMNS)]

    def slice(self, start: int, stop: int) -> FacialSeries:
        """The analysed frames with ``start <= frame < stop``."""
        keep = (self.values.index >= start) & (self.values.index < stop)
        return replace(self, values=self.values.loc[keep], faces=self.faces.loc[keep])


#: Faces whose box areas differ by less than this fraction count as equally large.
SAME_SIZE = 0.05


def select_face(detections: pd.DataFrame) -> pd.Series | None:
    """The face to keep from one frame's py-feat rows: the largest box, where boxes
    within :data:`SAME_SIZE` of the largest count as equally large and the higher
    detection score wins among them. None when no row has a finite box. (Assumes the
    recorded subject is the largest face in the analysed region.)"""
    boxes = detections[list(FACE_COLUMNS[:4])].to_numpy(dtype=float)
    valid = np.isfinite(boxes).all(axis=1)
    if not valid.any():
        return None
    rows = detections.loc[valid]
    area = rows["FaceRectWidth"].to_numpy(float) * rows["FaceRectHeight"].to_numpy(float)
    score = np.nan_to_num(rows["FaceScore"].to_numpy(float), nan=0.0)
    score[area < (1.0 - SAME_SIZE) * area.max()] = -np.inf
    return rows.iloc[int(np.argmax(score))]


def _normalise_columns(fex: pd.DataFrame, detector: str) -> pd.DataFrame:
    if detector == "v2":
        fex = fex.rename(columns=_V2_EMOTIONS)
    needed = list(AU_COLUMNS) + list(EMOTION_COLUMNS) + list(FACE_COLUMNS) + ["frame"]
    absent = [c for c in needed if c not in fex.columns]
    if absent:
        raise FacialError(f"py-feat ({detector}) output lacks columns {absent}; is the installed py-feat 2.1.x?")
    return fex


def video_content_id(path: Path) -> str:
    """SHA-256 of the file size and its first and last MiB: identifies a video by
    content (moving or copying it keeps the id) without reading all of it."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return h.hexdigest()


# --------------------------------------------------------------------------- analyzer


@dataclass(frozen=True)
class FacialAnalyzer:
    """Runs py-feat over videos and caches the per-frame series (the paper's AU and
    emotion tables compare these series).

    ``detector`` and the ``*_model`` names choose py-feat's detector and models (py-feat's
    own option names; see :class:`FeatModelSet`); ``model_set`` (``"v1"``, an
    :data:`AU_MODELS` name or a :class:`FeatModelSet`; init only), when given, sets all
    five at once.
    :attr:`feat_models` is the resulting :class:`FeatModelSet`. ``batch_size``: frames
    per forward pass. ``device``: ``"auto"`` (CUDA, else MPS, else CPU), ``"cpu"``,
    ``"cuda"``, ... ``stride``: analyse every ``stride``-th frame. ``face_threshold``:
    py-feat's face detection threshold. ``weights_dir``: the py-feat weights folder
    (None: see :func:`feat_cache_dir`). ``channels_last`` (ours, default on): py-feat's
    torch models (face, landmark, emotion nets) run with NHWC weights, which oneDNN and
    cuDNN convolve faster; values change only by float summation order.
    ``precision="bf16"`` (ours, opt in): detection runs under bf16 autocast — faster on
    GPUs and on CPUs with AVX-512 BF16/AMX, but AU and emotion values move slightly, so the
    paper's float32 stays the default (the cache key records it). The py-feat detector is built on the first
    analysis that needs one (not on a cache hit) and reused by later ones.
    """

    detector: Literal["v1", "v2"] = "v1"
    face_model: FaceModel = "retinaface"
    landmark_model: LandmarkModel = "mobilefacenet"
    au_model: AUModel = "xgb"
    emotion_model: EmotionModel = "resmasknet"
    batch_size: int = 16
    device: str = "auto"
    stride: int = 1
    face_threshold: float = 0.5
    weights_dir: Path | None = None
    channels_last: bool = True
    precision: Literal["32", "bf16"] = "32"
    model_set: InitVar[FeatModelSet | str | None] = None
    _feat_detector: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self, model_set: FeatModelSet | str | None) -> None:
        if model_set is not None:
            ms = _model_set(model_set)
            for name in ("detector", "face_model", "landmark_model", "au_model", "emotion_model"):
                object.__setattr__(self, name, getattr(ms, name))
        _ = self.feat_models  # building it validates the names
        if self.weights_dir is not None:
            object.__setattr__(self, "weights_dir", Path(self.weights_dir))
        if self.batch_size < 1:
            raise ValueError(f"facial analysis: batch_size must be >= 1, got {self.batch_size}")
        if self.stride < 1:
            raise ValueError(f"facial analysis: stride must be >= 1, got {self.stride}")
        if self.precision not in ("32", "bf16"):
            raise ValueError(f"facial analysis: precision must be '32' or 'bf16', got {self.precision!r}")
        if not 0.0 < self.face_threshold < 1.0:
            raise ValueError(f"facial analysis: face_threshold must lie in (0, 1), got {self.face_threshold}")

    @property
    def feat_models(self) -> FeatModelSet:
        """The py-feat detector and models this analyzer runs."""
        return FeatModelSet(self.detector, self.face_model, self.landmark_model, self.au_model, self.emotion_model)

    # -- weights / detector

    def require_weights(self) -> dict[HubFile, Path]:
        """Local paths of all weight files; raises :class:`FacialWeightsMissing`."""
        return require_feat_weights(self.feat_models, self.weights_dir)

    def _weights_id(self, paths: dict[HubFile, Path]) -> list[str]:
        return [f"{repo}/{name}@{path.parent.name}:{path.stat().st_size}" for (repo, name), path in sorted(paths.items())]

    def _build_detector(self):
        """Build the py-feat detector offline from the weights folder (real constructors)."""
        import torch

        paths = self.require_weights()
        ms = self.feat_models
        with feat_hub_offline(self.weights_dir), torch.no_grad(), warnings.catch_warnings():
            # torch.no_grad() also restores the grad mode that py-feat's RetinaFace
            # switches off globally (torch.set_grad_enabled(False) in its __init__).
            warnings.filterwarnings("ignore", message=".*does not regress 6DoF head pose.*")
            if ms.detector == "v2":
                from feat import Detectorv2

                return Detectorv2(
                    device=self.device,
                    face_detection_threshold=self.face_threshold,
                    identity_model=None,
                    multitask_weights=str(paths[_MULTITASK_FILE]),
                )
            from feat import Detectorv1

            return Detectorv1(
                face_model=ms.face_model,
                landmark_model=ms.landmark_model,
                au_model=ms.au_model,
                emotion_model=ms.emotion_model,
                identity_model=None,
                gaze_model=None,
                device=self.device,
            )

    def _get_detector(self):
        if self._feat_detector is None:  # built lazily; the config itself is frozen
            detector = self._build_detector()
            if self.channels_last:
                _to_channels_last(detector)
            if self.precision == "bf16":
                _run_networks_in_bf16(detector, str(getattr(detector, "device", "cpu")).split(":")[0])
            object.__setattr__(self, "_feat_detector", detector)
        return self._feat_detector

    # -- cache

    def cache_key(
        self, path: Path, bbox: tuple[int, int, int, int] | None, weights: dict[HubFile, Path], size: int | None = None
    ) -> str:
        from importlib.metadata import version

        identity = {
            "version": CACHE_VERSION,
            "video": video_content_id(path),
            "bbox": None if bbox is None else [int(v) for v in bbox],
            "stride": self.stride,
            "face_threshold": self.face_threshold,
            **({"precision": self.precision} if self.precision != "32" else {}),
            "models": self.feat_models.describe(),
            "weights": self._weights_id(weights),
            "py-feat": version("py-feat"),
        }
        if size is not None:  # keys of unresized analyses stay what they were
            identity["size"] = int(size)
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]

    def cache_file(
        self, path: str | os.PathLike, bbox: tuple[int, int, int, int] | None, size: int | None, cache_dir: str | os.PathLike
    ) -> Path:
        """Where the series of ``path`` (cut to ``bbox``, resized to ``size``) is cached."""
        path = Path(path)
        return Path(cache_dir) / f"{path.stem}-{self.cache_key(path, bbox, self.require_weights(), size)}.csv"

    # -- analysis

    def analyze_video(
        self,
        path: str | os.PathLike,
        bbox: tuple[int, int, int, int] | None = None,
        frame_range: tuple[int, int] | None = None,
        cache_dir: str | os.PathLike | None = None,
        size: int | None = None,
    ) -> FacialSeries:
        """AU and emotion series of the video at ``path``.

        ``bbox`` (x, y, w, h): analyse only this region of each frame (the recording's
        fixed face box; leave None for videos that are already crops, e.g. cleaned
        ones). ``size``: resize that region to ``size`` x ``size`` first
        (:func:`sensor_removal.video.crop_resize`), so that normal, sensor and cleaned
        videos show py-feat faces of one resolution (the evaluation uses the cleaned
        crop size). ``frame_range`` (start, stop): return only frames
        ``start <= f < stop``; the whole video is analysed and cached regardless.
        ``cache_dir``: where series are cached (None: no cache). Raises
        :class:`FacialWeightsMissing` before any decoding when weights are absent,
        :class:`sensor_removal.video.VideoError` for unreadable videos.
        """
        from sensor_removal.video import crop_resize

        path = Path(path)
        self.require_weights()
        info = probe(path)
        if bbox is not None:
            from sensor_removal.video import check_bbox

            problem = check_bbox(tuple(bbox), info.width, info.height)
            if problem:
                raise FacialError(f"{path}: bbox: {problem}")
        cache_file = self.cache_file(path, bbox, size, cache_dir) if cache_dir is not None else None
        series = self.load_series(cache_file, info.fps, path) if cache_file is not None else None
        if series is None:
            box = tuple(bbox) if bbox is not None else (0, 0, info.width, info.height)
            builder = self.series_builder(path, info.fps, total=len(range(0, info.frame_count, self.stride)))
            for number, frame in iter_frames(path, range(0, info.frame_count, self.stride)):
                if size is not None:
                    frame = crop_resize(frame, box, size)
                elif bbox is not None:
                    x, y, w, h = (int(v) for v in bbox)
                    frame = frame[y : y + h, x : x + w]
                builder.add(number, frame)
            series = builder.finish()
            if cache_file is not None:
                self.save_series(series, cache_file)
        if frame_range is not None:
            series = series.slice(*frame_range)
        return series

    def series_builder(self, path: Path, fps: float, total: int | None = None) -> SeriesBuilder:
        """A :class:`SeriesBuilder` for the frames of ``path``, pushed one at a time (the
        evaluation's single decoding pass feeds several metric families this way)."""
        return SeriesBuilder(self, Path(path), fps, total)

    def save_series(self, series: FacialSeries, cache_file: Path) -> None:
        """Write ``series`` to ``cache_file`` (atomically)."""
        self._save(series, cache_file)

    def load_series(self, cache_file: Path, fps: float, path: Path) -> FacialSeries | None:
        """The cached series in ``cache_file``, or None when absent or stale."""
        return self._load(cache_file, fps, path)

    def _save(self, series: FacialSeries, cache_file: Path) -> None:
        table = pd.concat([series.values, series.faces], axis=1)
        with atomic_output(cache_file) as tmp:
            table.to_csv(tmp, index=True)

    def _load(self, cache_file: Path, fps: float, path: Path) -> FacialSeries | None:
        if not cache_file.is_file():
            return None
        table = pd.read_csv(cache_file, index_col="frame", float_precision="round_trip")
        expected = list(AU_COLUMNS) + list(EMOTION_COLUMNS) + list(FACE_COLUMNS)
        if list(table.columns) != expected:
            log.warning("%s: unexpected columns, recomputing", cache_file)
            return None
        table.index = table.index.astype("int64")
        return FacialSeries(
            values=table[list(AU_COLUMNS) + list(EMOTION_COLUMNS)].astype(float),
            faces=table[list(FACE_COLUMNS)].astype(float),
            stride=self.stride,
            fps=fps,
            path=path,
        )


class SeriesBuilder:
    """Collects frames of one video pushed one at a time (``add(number, frame)``, RGB
    uint8, already cut and resized) and runs py-feat on them in chunks of
    ``batch_size * 4`` frames; :meth:`finish` returns the :class:`FacialSeries`."""

    def __init__(self, analyzer: FacialAnalyzer, path: Path, fps: float, total: int | None = None) -> None:
        self.analyzer, self.path, self.fps, self.total = analyzer, path, fps, total
        self.rows: dict[int, pd.Series | None] = {}
        self.batch: list[np.ndarray] = []
        self.numbers: list[int] = []

    def add(self, number: int, frame: np.ndarray) -> None:
        self.batch.append(frame)
        self.numbers.append(int(number))
        if len(self.batch) == self.analyzer.batch_size * 4:  # frames per detect() call (py-feat batches within it)
            self._flush()
            log.info("%s: analysed %d / %s frames", self.path.name, len(self.rows), self.total or "?")

    def _flush(self) -> None:
        import torch

        a = self.analyzer
        detector = a._get_detector()
        tensor = torch.from_numpy(np.stack(self.batch)).permute(0, 3, 1, 2).contiguous()
        with feat_hub_offline(a.weights_dir), torch.no_grad():
            fex = detector.detect(
                tensor,
                data_type="tensor",
                batch_size=a.batch_size,
                face_detection_threshold=a.face_threshold,
                progress_bar=False,
            )
        fex = _normalise_columns(pd.DataFrame(fex), a.feat_models.detector)
        for position, number in enumerate(self.numbers):
            self.rows[number] = select_face(fex.loc[fex["frame"] == position])
        self.batch.clear()
        self.numbers.clear()

    def finish(self) -> FacialSeries:
        if self.batch:
            self._flush()
        rows = self.rows
        columns = list(AU_COLUMNS) + list(EMOTION_COLUMNS) + list(FACE_COLUMNS)
        table = np.full((len(rows), len(columns)), np.nan)
        for i, number in enumerate(sorted(rows)):
            face = rows[number]
            if face is not None:
                table[i] = face[columns].to_numpy(dtype=float)
        frame_index = pd.Index(sorted(rows), name="frame", dtype="int64")
        data = pd.DataFrame(table, index=frame_index, columns=columns)
        series = FacialSeries(
            values=data[list(AU_COLUMNS) + list(EMOTION_COLUMNS)],
            faces=data[list(FACE_COLUMNS)],
            stride=self.analyzer.stride,
            fps=self.fps,
            path=self.path,
        )
        if series.no_face_frames:
            log.warning("%s: no face in %d of %d analysed frames (NaN rows)", self.path, series.no_face_frames, series.frames)
        return series
