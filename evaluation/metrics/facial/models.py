"""py-feat model sets, the weight files each loads, output columns, errors (see the package docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from evaluation.weight_files import MissingWeightsError, WeightFile

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
    :class:`~evaluation.weight_files.MissingWeightsError`, whose message names each file's
    full path and ``python -m evaluation fetch-weights --metrics facial``; ``missing``
    holds the :class:`~evaluation.weight_files.WeightFile` s, ``weights_dir`` the folder."""

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
#: network (``v2``). ``v1`` is an alias of ``xgb`` (py-feat's v1 default). The classical
#: models keep py-feat's ``mobilefacenet`` landmarks, not the paper's MobileNet: py-feat's
#: ``mobilenet`` cuts 224-px faces whose HOG vector (23,328 values) the AU classifiers,
#: built on 112-px crops (5,408), cannot take (tests/test_au_landmarks.py).
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
