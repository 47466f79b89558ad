"""Stand-in py-feat weights for tests: small or random weights of the right shapes,
laid out as a Hugging Face hub cache, so that py-feat's *real* constructors
(``Detectorv1`` / ``Detectorv2``) and its real ``detect`` run end to end offline.

Never use these outside tests: every number they produce is meaningless.

What each stand-in is (the file names and containers are exactly what py-feat 2.1.5
loads; see ``evaluation.metrics.facial.FEAT_WEIGHTS``):

* ``py-feat/retinaface_r34`` → ``model.safetensors``: a *hand-set* RetinaFace-R34 that
  detects bright blobs. Random RetinaFace weights give arbitrary boxes, so every weight
  is zero except one path: the stem averages R, G, B at the centre tap, every residual
  branch is silenced (its last BatchNorm has weight and bias 0) so each ResNet block is
  ``relu(identity)``, the down-sampling shortcuts and the FPN/SSH convolutions copy
  channel 0 through. Channel 0 of the stride-32 features is then
  ``relu(gray - 114.7)`` at pixel ``(32 i, 32 j)`` (the max over ±2 px), and the stride-32
  class head turns it into a face logit ``0.1 * that - 5``; the other FPN levels and the
  second anchor never fire. The box head's biases put one 64 x 64 box centred on the
  sample point. Net effect: a uniform blob brighter than ~165 that covers exactly one
  point ``(32 i, 32 j)`` is "a face" with a box centred on that point (the brighter, the
  higher the score); a dark frame has no face. :func:`draw_face` draws such a blob.
* ``py-feat/mobilefacenet`` → ``mobilefacenet_model_best.pth.tar``: MobileFaceNet's own
  random initialisation, except its final BatchNorm, set so that the 68 landmarks are
  py-feat's neutral face plus a small input-dependent perturbation (see
  :func:`_write_mobilefacenet` for why); saved as ``{"state_dict": ...}``.
* ``py-feat/xgb_au`` → ``xgb_au_classifier_v2.skops``: py-feat's own ``XGBClassifier``
  wrapper holding StandardScaler + PCA(8) fitted on random HOG-sized vectors (the HOG
  length is measured with py-feat's own feature extractor) and 20 two-tree xgboost
  classifiers fitted on random data of width ``8 + 136``, saved with skops.
* ``py-feat/resmasknet`` → ``config.json`` + ``ResMaskNet_Z_resmasking_dropout1_rot30.pth``:
  default random initialisation of ``ResMasking`` with a 7-class head, saved as
  ``{"net": ...}`` in float16 (≈290 MB instead of 570 MB; ``load_state_dict`` casts it
  back to float32). Written once per test session.
* ``py-feat/face_multitask_v2`` → ``face_multitask_v28.safetensors`` (v2): a *tiny*
  multitask model (ConvNeXt-V2 atto backbone, 32-channel heads, 20 AUs, 7 emotions,
  52 blendshapes), randomly initialised. py-feat reads the architecture from the
  ``config`` entry of the safetensors metadata, so a smaller architecture is a faithful
  stand-in for the loading code.

All files go under one revision, :data:`STANDIN_REVISION`, with ``refs/main`` pointing to
it — the layout ``hf_hub_download`` resolves offline.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

#: The fake commit every stand-in file lives under (40 hex digits, as the hub requires).
STANDIN_REVISION = "5ca1ab1e" * 5

#: Side of the stand-in RetinaFace's box, pixels.
STANDIN_BOX = 64
#: Grid of the points the stand-in RetinaFace looks at: a face must cover ``(32 i, 32 j)``.
STANDIN_STRIDE = 32

_RGB_MEAN = (123.0, 117.0, 104.0)  # RetinaFace's per-channel mean (feat Retinaface_test)
_SCORE_SLOPE = 0.1
_SCORE_BIAS = -5.0


# --------------------------------------------------------------------------- layout


def hub_path(cache_dir: Path, repo_id: str, filename: str, revision: str = STANDIN_REVISION) -> Path:
    """Where the hub cache keeps ``filename`` of ``repo_id`` at ``revision``."""
    folder = "models--" + repo_id.replace("/", "--")
    return Path(cache_dir) / folder / "snapshots" / revision / filename


def write_hub_file(cache_dir: Path, repo_id: str, filename: str, write: Callable[[Path], None]) -> Path:
    """Create ``refs/main`` → :data:`STANDIN_REVISION` and write one snapshot file with
    ``write(path)``. Returns the file's path."""
    path = hub_path(cache_dir, repo_id, filename)
    path.parent.mkdir(parents=True, exist_ok=True)
    refs = path.parents[2] / "refs"
    refs.mkdir(exist_ok=True)
    (refs / "main").write_text(STANDIN_REVISION)
    write(path)
    return path


# --------------------------------------------------------------------------- RetinaFace


def retinaface_state_dict() -> dict[str, torch.Tensor]:
    """The bright-blob RetinaFace-R34 described in the module docstring."""
    from feat.face_detectors.Retinaface.Retinaface_model import RETINAFACE_R34_CFG, RetinaFace

    net = RetinaFace(RETINAFACE_R34_CFG)
    sd = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    for key in sd:  # every BatchNorm: identity (running var 1, weight 1)
        if key.endswith("running_var"):
            sd[key].fill_(1.0)
            sd[key.replace("running_var", "weight")].fill_(1.0)
    for key in sd:  # silence each residual branch: out = relu(identity)
        if key.startswith("body.layer") and ".bn2." in key and key.endswith(("weight", "bias")):
            sd[key].zero_()
    # stem: channel 0 = mean over R, G, B of the (mean-subtracted) centre pixel
    sd["body.conv1.weight"][0, :, 3, 3] = 1.0 / 3.0
    for layer in ("layer2", "layer3", "layer4"):  # shortcuts copy channel 0, stride 2
        sd[f"body.{layer}.0.downsample.0.weight"][0, 0, 0, 0] = 1.0
    sd["fpn.output3.0.weight"][0, 0, 0, 0] = 1.0  # stride-32 FPN level: copy channel 0
    sd["ssh3.conv3X3.0.weight"][0, 0, 1, 1] = 1.0  # SSH: copy channel 0 (centre tap)
    # class heads: [anchor0 bg, anchor0 face, anchor1 bg, anchor1 face] per level
    for level in range(3):
        bias = sd[f"ClassHead._convs.{level}.bias"]
        bias[1] = bias[3] = -20.0  # never a face ...
    sd["ClassHead._convs.2.bias"][1] = _SCORE_BIAS  # ... except anchor 0 at stride 32
    sd["ClassHead._convs.2.weight"][1, 0, 0, 0] = _SCORE_SLOPE
    # box: anchor 0 at stride 32 has prior (cell centre, 256 px); shift the centre by
    # -16 px onto the sample point (32 i, 32 j) and shrink to STANDIN_BOX
    shift = -(STANDIN_STRIDE / 2) / (0.1 * 256)
    log_scale = math.log(STANDIN_BOX / 256) / 0.2
    sd["BboxHead._convs.2.bias"][0:4] = torch.tensor([shift, shift, log_scale, log_scale])
    return sd


def face_score(gray: float) -> float:
    """The stand-in RetinaFace's face probability for a blob of uniform ``gray``."""
    x = max(gray - sum(_RGB_MEAN) / 3.0, 0.0)
    return 1.0 / (1.0 + math.exp(-(_SCORE_SLOPE * x + _SCORE_BIAS)))


def draw_face(frame: np.ndarray, cx: int, cy: int, gray: int = 220, half: int = 24) -> np.ndarray:
    """Draw a blob the stand-in RetinaFace detects, centred on ``(cx, cy)`` (multiples of
    :data:`STANDIN_STRIDE`), with two dark "eyes" and a "mouth" away from the centre so
    the landmark and AU models see some structure. Modifies and returns ``frame``."""
    if cx % STANDIN_STRIDE or cy % STANDIN_STRIDE:
        raise ValueError(f"face centre ({cx}, {cy}) must lie on the {STANDIN_STRIDE}-px grid")
    if half >= STANDIN_STRIDE - 3:
        raise ValueError("a larger blob would cover a neighbouring sample point")
    frame[cy - half : cy + half, cx - half : cx + half] = gray
    e = half // 2
    frame[cy - e - 3 : cy - e + 3, cx - e - 3 : cx - e + 3] = 40
    frame[cy - e - 3 : cy - e + 3, cx + e - 3 : cx + e + 3] = 40
    frame[cy + e - 2 : cy + e + 2, cx - e : cx + e] = 60
    return frame


def face_frame(
    width: int = 128, height: int = 128, faces: tuple[tuple[int, int, int], ...] = ((64, 64, 220),), seed: int = 0
) -> np.ndarray:
    """A dark textured RGB frame (all pixels < 100, so never a face) with the given
    ``(cx, cy, gray)`` faces drawn on it."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(10, 90, size=(height, width, 3)).astype(np.uint8)
    for cx, cy, gray in faces:
        draw_face(frame, cx, cy, gray)
    return frame


# --------------------------------------------------------------------------- v1 models


def _write_retinaface(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.half().contiguous() for k, v in retinaface_state_dict().items()}, str(path))


def _mean_face() -> torch.Tensor:
    """py-feat's neutral 68-point face, scaled into [0.15, 0.85] of the crop, as the
    interleaved (x0, y0, x1, y1, ...) vector MobileFaceNet emits."""
    import pandas as pd
    from feat.utils.io import get_resource_path

    pts = pd.read_csv(Path(get_resource_path()) / "neutral_face_coordinates.csv")[["x", "y"]].to_numpy(float)
    pts = (pts - pts.min(axis=0)) / (pts.max(axis=0) - pts.min(axis=0)).max() * 0.7 + 0.15
    return torch.tensor(pts.reshape(-1), dtype=torch.float32)


def _write_mobilefacenet(path: Path) -> None:
    """Default random MobileFaceNet whose final BatchNorm is set so that it emits py-feat's
    neutral face plus a small (~±0.03) input-dependent perturbation. A purely random
    landmark net emits all 68 points at (0, 0) for a blank crop (py-feat feeds zeroed
    crops for frames without a face), and py-feat's face alignment then fails on a
    singular matrix — real weights never do that."""
    from feat.landmark_detectors.mobilefacenet_test import MobileFaceNet

    torch.manual_seed(1)
    net = MobileFaceNet([112, 112], 136, device="cpu").eval()
    with torch.no_grad():
        raw = net(torch.rand(8, 3, 112, 112))[0]  # linear output / sqrt(1 + eps)
    sd = net.state_dict()
    sd["output_layer.bn.running_var"] = raw.pow(2).mean(dim=0) + 1e-3
    sd["output_layer.bn.weight"] = torch.full((136,), 0.03)
    sd["output_layer.bn.bias"] = _mean_face()
    torch.save({"state_dict": sd}, path)


def _write_resmasknet(path: Path) -> None:
    from feat.emo_detectors.ResMaskNet.resmasknet_test import ResMasking

    torch.manual_seed(2)
    net = ResMasking("", in_channels=3)
    net.fc = torch.nn.Sequential(torch.nn.Dropout(0.4), torch.nn.Linear(512, 7))
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    torch.save({"net": sd}, path)


def _hog_length() -> int:
    """Length of py-feat's HOG feature vector for a 112-px face crop, measured with its
    own extractor (the AU classifier's scaler/PCA must accept exactly this width)."""
    from feat.utils.face_mask import extract_hog_features_batched

    faces = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    features, _ = extract_hog_features_batched(faces, _mean_face()[None])
    return int(features.shape[1])


def _write_xgb_au(path: Path) -> None:
    import skops.io
    import xgboost
    from feat.au_detectors.StatLearning.SL_test import XGBClassifier as FeatXGB
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    hog = rng.normal(size=(24, _hog_length())).astype(np.float32)
    n_pca = 8
    parts = {}
    for region in ("upper", "lower", "full"):
        scaler = StandardScaler().fit(hog)
        parts[f"scaler_{region}"] = scaler
        parts[f"pca_model_{region}"] = PCA(n_components=n_pca, random_state=0).fit(scaler.transform(hog))
    wrapper = FeatXGB()
    x = rng.normal(size=(40, n_pca + 136)).astype(np.float32)
    classifiers = {}
    for key in wrapper.au_keys:
        y = (rng.random(40) < 0.5).astype(int)
        y[:2] = (0, 1)  # both classes present
        clf = xgboost.XGBClassifier(n_estimators=2, max_depth=2, n_jobs=1, random_state=0)
        classifiers[key] = clf.fit(x, y)
    wrapper.load_weights(classifiers=classifiers, **parts)
    skops.io.dump(wrapper, path)


# --------------------------------------------------------------------------- v2 model

#: The tiny multitask architecture written into the stand-in's safetensors metadata.
TINY_MULTITASK_CONFIG = {
    "backbone": "convnextv2_atto",
    "image_size": 224,
    "n_au": 20,
    "n_emotion": 7,
    "n_blendshape": 52,
    "mesh_normalized": True,
    "afg_channels": 32,
    "mefl_channels": 32,
    "unified_lmk_dim": 32,
    "drop_mefl": True,
    "use_head_v3": True,
    "emotion_use_au_prob": True,
    "drop_path_rate": 0.0,
}


def _write_multitask(path: Path) -> None:
    from feat.multitask.model_v2 import MEGraphAUv2, ModelV2Config
    from safetensors.torch import save_file

    torch.manual_seed(4)
    net = MEGraphAUv2(ModelV2Config(**TINY_MULTITASK_CONFIG, pretrained=False))
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(sd, str(path), metadata={"config": json.dumps(TINY_MULTITASK_CONFIG)})


# --------------------------------------------------------------------------- entry point

_WRITERS: dict[tuple[str, str], Callable[[Path], None]] = {
    ("py-feat/retinaface_r34", "model.safetensors"): _write_retinaface,
    ("py-feat/mobilefacenet", "mobilefacenet_model_best.pth.tar"): _write_mobilefacenet,
    ("py-feat/xgb_au", "xgb_au_classifier_v2.skops"): _write_xgb_au,
    ("py-feat/resmasknet", "config.json"): lambda p: p.write_text(json.dumps({"in_channels": 3, "num_classes": 7})),
    ("py-feat/resmasknet", "ResMaskNet_Z_resmasking_dropout1_rot30.pth"): _write_resmasknet,
    ("py-feat/face_multitask_v2", "face_multitask_v28.safetensors"): _write_multitask,
}


def write_standin_feat_weights(cache_dir: Path, model_set: str = "v1") -> list[Path]:
    """Write stand-ins for every file of ``evaluation.metrics.facial.FEAT_WEIGHTS[model_set]``
    into the hub cache ``cache_dir`` (files already there are kept). Returns their paths."""
    from evaluation.metrics.facial import FEAT_WEIGHTS

    paths = []
    for repo_id, filename in FEAT_WEIGHTS[model_set]:
        path = hub_path(cache_dir, repo_id, filename)
        if not path.is_file():
            write_hub_file(cache_dir, repo_id, filename, _WRITERS[(repo_id, filename)])
        paths.append(path)
    return paths
