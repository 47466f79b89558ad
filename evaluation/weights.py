"""Pretrained weights of the evaluation: where they live, whether they are there, fetching.

Pretrained weights, offline (docs/weights.md): LPIPS (AlexNet), FID (Inception-v3) and py-feat
load pretrained weights through the libraries' own loading code and caches. Clusters
have no network, so

* :func:`check_weights` runs *before* any work and raises :class:`MissingWeightsError`
  whose message names every missing file by its full path and the command that fetches
  them (``python -m evaluation fetch-weights --metrics ...``); nothing is downloaded
  behind the user's back and no metric is ever computed with other weights;
* :func:`fetch_weights` (on a machine with network) downloads every file into the place
  the library reads it from and verifies it: torch hub files by the sha256 prefix in
  their name, then by loading the model through the library's real code.

Where the files are:

* ``lpips`` — torchvision's AlexNet, ``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``
  (``torch.hub.get_dir()``); the LPIPS linear heads ship inside the ``lpips`` package.
* ``fid`` — torch-fidelity's Inception-v3 (the TF-FID port), the same directory,
  ``weights-inception-2015-12-05-6726825d.pth``.
* ``facial`` — py-feat's model files, listed and fetched by :mod:`evaluation.metrics.facial`
  into a user cache folder, ``~/.cache/sensor-removal/feat`` (``$SENSOR_REMOVAL_FEAT_CACHE``
  moves it; ``HF_HOME`` does not, py-feat passes its own folder).
* ``landmarks`` — dlib's 68-point shape predictor, shipped inside the
  ``face-recognition-models`` package (:mod:`evaluation.metrics.landmarks`): nothing to fetch.

``check_weights`` tests presence (like the libraries, which do not hash cached files);
``fetch_weights`` also verifies files that are already present and refuses ones whose
hash does not match (e.g. the random stand-ins the tests write).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from evaluation.weight_files import (
    WEIGHTED_METRICS,
    MissingWeightsError,
    WeightFile,
    WeightsError,
    fetch_command,
    fid_files,
    lpips_files,
    normalise_metrics,
    require_present,
)


def _facial_files(model_set: str = "v1", weights_dir: str | os.PathLike | None = None) -> list[WeightFile]:
    """py-feat's files, as :mod:`evaluation.metrics.facial` lists and resolves them (it owns the
    list, the hub-cache layout and where the folder is)."""
    from evaluation.metrics import facial

    missing = facial.missing_feat_weights(model_set, weights_dir)
    if missing:
        paths = missing
    else:
        paths = list(facial.require_feat_weights(model_set, weights_dir).values())
    out = []
    for path in paths:
        repo = next(
            (p[len("models--") :].replace("--", "/") for p in Path(path).parts if p.startswith("models--")), "py-feat"
        )
        out.append(WeightFile("facial", Path(path), f"py-feat {model_set} model file {repo}/{Path(path).name}"))
    return out


def required_weights(
    metrics: Iterable[str] | str, *, feat_model_set: str = "v1", feat_weights_dir: str | os.PathLike | None = None
) -> list[WeightFile]:
    """The weight files the given metrics load (``groundtruth`` needs none).

    For ``facial`` the list holds the *missing* py-feat files when any is missing (their
    expected hub-cache paths), else all of them with their resolved paths."""
    out: list[WeightFile] = []
    for m in normalise_metrics(metrics):
        if m == "lpips":
            out += lpips_files()
        elif m == "fid":
            out += fid_files()
        elif m == "facial":
            out += _facial_files(feat_model_set, feat_weights_dir)
        elif m == "landmarks":
            from evaluation.metrics.landmarks import weight_files

            out += weight_files()
    return out


def check_weights(
    metrics: Iterable[str] | str,
    *,
    feat_model_set: str = "v1",
    feat_weights_dir: str | os.PathLike | None = None,
    leave_out: str | None = None,
) -> list[WeightFile]:
    """Raise :class:`MissingWeightsError` unless every file the metrics load is present
    (``leave_out``: the message's last line, how to do without them). Returns the
    (present) files. Checks presence only; see :func:`verify_file`."""
    ms = normalise_metrics(metrics)
    files = required_weights(ms, feat_model_set=feat_model_set, feat_weights_dir=feat_weights_dir)
    return require_present(files, ms, leave_out)


def available_metrics() -> list[str]:
    """Which of ``lpips``, ``fid``, ``facial`` have all their weights on this machine
    (for the demo: run what can run, say what cannot). Never downloads."""
    out = []
    for m in WEIGHTED_METRICS:
        try:
            files = required_weights([m])
        except Exception:  # noqa: BLE001 - e.g. py-feat not installed: not available
            continue
        if all(w.present for w in files):
            out.append(m)
    return out


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_file(w: WeightFile) -> None:
    """Check a present file against the sha256 prefix in its name (torch hub convention).
    Raises :class:`WeightsError` naming the file on a mismatch."""
    if not w.present:
        raise MissingWeightsError([w], [w.metric])
    if w.sha256_prefix:
        digest = sha256_of(w.path)
        if not digest.startswith(w.sha256_prefix):
            raise WeightsError(
                f"{w.path}: sha256 {digest[:12]}... does not start with {w.sha256_prefix} (the hash in "
                "its name): a stand-in or corrupt file. Delete it and run "
                f"`{fetch_command([w.metric])}` again."
            )


def _download(w: WeightFile) -> None:
    import torch.hub

    if w.url is not None:
        w.path.parent.mkdir(parents=True, exist_ok=True)
        # Writes to a temporary file, checks the sha256 prefix, then moves it into place.
        try:
            torch.hub.download_url_to_file(w.url, str(w.path), hash_prefix=w.sha256_prefix, progress=True)
        except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
            raise WeightsError(f"{w.path}: download from {w.url} failed: {exc}") from None
    else:
        raise WeightsError(f"{w.path}: {w.description}; cannot be downloaded (reinstall the package that ships it)")
    if not w.present:
        raise WeightsError(f"{w.path}: still missing after download ({w.description})")


def load_check(metric: str, device: str = "cpu", feat_model_set: str = "v1") -> None:
    """Load the metric's network through the library's real code (the strongest check
    that the files fit: every tensor name and shape must match)."""
    if metric == "lpips":
        from evaluation.metrics.perceptual import load_lpips

        load_lpips(device=device)
    elif metric == "fid":
        from evaluation.metrics.perceptual import load_inception

        load_inception(device=device)
    elif metric == "facial":
        from evaluation.metrics import facial

        facial.verify_feat_weights(feat_model_set, device=device)
    elif metric == "landmarks":
        from evaluation.metrics.landmarks import LandmarkDetector

        LandmarkDetector()


def fetch_weights(
    metrics: Iterable[str] | str = WEIGHTED_METRICS,
    *,
    feat_model_set: str = "v1",
    log: Callable[[str], None] = print,
) -> list[WeightFile]:
    """Download (where absent) and verify every weight file of ``metrics``.

    Present torch hub files are verified, not replaced: a sha256 mismatch raises
    :class:`WeightsError` (delete the file and fetch again). py-feat's files are fetched
    by :func:`evaluation.metrics.facial.fetch_feat_weights` (``huggingface_hub``; it skips files
    already there). Then each metric's network is loaded once through the library's
    own code. Needs network only for absent files."""
    ms = [m for m in normalise_metrics(metrics) if m in WEIGHTED_METRICS]
    files: list[WeightFile] = []
    for w in required_weights([m for m in ms if m != "facial"]):
        if w.present:
            verify_file(w)
            log(f"ok      {w.path}")
        elif w.bundled:
            raise WeightsError(f"{w.path}: {w.description}; the package install is incomplete: reinstall it")
        else:
            log(f"fetch   {w.url} -> {w.path}")
            _download(w)
            verify_file(w)
            log(f"ok      {w.path}")
        files.append(w)
    if "facial" in ms:
        from evaluation.metrics import facial

        log(f"fetch   py-feat {feat_model_set} model files -> {facial.feat_cache_dir()}")
        for p in facial.fetch_feat_weights(feat_model_set):
            log(f"ok      {p}")
        files += required_weights(["facial"], feat_model_set=feat_model_set)
    for m in ms:
        load_check(m, feat_model_set=feat_model_set)
        log(f"loaded  {m}: the library's loading code accepts the files")
    return files
