"""Facial analysis with py-feat: one Action Unit / emotion time series per video.

The paper (Büchner et al., VISAPP 2023; its AU and emotion tables) shows that cleaned
videos are usable by running an off-the-shelf facial-analysis tool on normal (N),
sensor (S) and cleaned (C) videos and comparing the per-frame AU and emotion curves
(DTW, MAPE; see ``evaluation.metrics.timeseries``). This module produces those curves with
py-feat 2.1.5.

Frames
    Decoded by the project's own reader (:func:`sensor_removal.core.video.iter_frames`, one
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

Package layout
    ``models`` (model sets, their weight files, output columns, errors), ``weights``
    (where weights are found, fetched, checked; the offline hub scope), ``series``
    (:class:`FacialSeries`, face choice), ``analyzer`` (:class:`FacialAnalyzer`,
    :class:`SeriesBuilder`), ``fastpaths`` (speed-ups applied to a built detector).
    Everything is importable from ``evaluation.metrics.facial``.
"""

from __future__ import annotations

from evaluation.metrics.facial.analyzer import FacialAnalyzer, SeriesBuilder, verify_feat_weights
from evaluation.metrics.facial.fastpaths import (
    FOLD_RTOL,
    FaceDetectorPool,
    SharedFaceDetector,
    _feat_networks,
    _run_networks_in_bf16,
    _to_channels_last,
    fold_batchnorm_on_first_call,
)
from evaluation.metrics.facial.models import (
    _AU_FILES,
    _EMOTION_FILES,
    _FACE_FILES,
    _LANDMARK_FILES,
    _MULTITASK_FILE,
    _V2_EMOTIONS,
    AU_COLUMNS,
    AU_MODELS,
    CACHE_ENV,
    CACHE_VERSION,
    DEFAULT_AU_MODELS,
    EMOTION_COLUMNS,
    EXCLUDED_AUS,
    FACE_COLUMNS,
    FEAT_WEIGHTS,
    FETCH_COMMAND,
    PAPER_AU_LIST,
    PAPER_AUS,
    PAPER_COUNTERPART,
    AUModel,
    EmotionModel,
    FaceModel,
    FacialError,
    FacialWeightsMissing,
    FeatModelSet,
    HubFile,
    LandmarkModel,
    ModelSetLike,
    _model_set,
)
from evaluation.metrics.facial.series import (
    SAME_SIZE,
    FacialSeries,
    _normalise_columns,
    select_face,
    video_content_id,
)
from evaluation.metrics.facial.weights import (
    check_hub_download,
    feat_cache_dir,
    feat_hub_offline,
    feat_package_cache_dir,
    fetch_feat_weights,
    missing_feat_weights,
    require_feat_weights,
    user_cache_dir,
)

__all__ = [
    "_AU_FILES",
    "_EMOTION_FILES",
    "_FACE_FILES",
    "_LANDMARK_FILES",
    "FacialAnalyzer",
    "SeriesBuilder",
    "FOLD_RTOL",
    "FaceDetectorPool",
    "SharedFaceDetector",
    "_feat_networks",
    "_run_networks_in_bf16",
    "_to_channels_last",
    "fold_batchnorm_on_first_call",
    "_MULTITASK_FILE",
    "_V2_EMOTIONS",
    "AU_COLUMNS",
    "AU_MODELS",
    "CACHE_ENV",
    "CACHE_VERSION",
    "DEFAULT_AU_MODELS",
    "EMOTION_COLUMNS",
    "EXCLUDED_AUS",
    "FACE_COLUMNS",
    "FEAT_WEIGHTS",
    "FETCH_COMMAND",
    "PAPER_AU_LIST",
    "PAPER_AUS",
    "PAPER_COUNTERPART",
    "AUModel",
    "EmotionModel",
    "FaceModel",
    "FacialError",
    "FacialWeightsMissing",
    "FeatModelSet",
    "HubFile",
    "LandmarkModel",
    "ModelSetLike",
    "_model_set",
    "SAME_SIZE",
    "FacialSeries",
    "_normalise_columns",
    "select_face",
    "video_content_id",
    "check_hub_download",
    "feat_cache_dir",
    "feat_hub_offline",
    "feat_package_cache_dir",
    "fetch_feat_weights",
    "missing_feat_weights",
    "require_feat_weights",
    "user_cache_dir",
    "verify_feat_weights",
]
