"""The type of a pretrained-weight file, the errors about them and where torch hub keeps the
LPIPS/FID files: what every metric that loads weights imports (:mod:`evaluation.weights`,
the registry, which knows every metric's files and fetches them, imports the metrics;
the metrics never import it back).

:class:`WeightsError` is a :class:`~sensor_removal.core.errors.UserError`: a missing or
broken weight is bad input (exit code 2), named by its full path with the command that
fetches it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sensor_removal.core.errors import UserError

#: Every metric the evaluation knows, in the order of the paper's tables.
METRICS: tuple[str, ...] = ("lpips", "fid", "facial", "groundtruth", "landmarks", "temporal")


#: Metrics that load pretrained weights (``landmarks``: dlib's, shipped inside a package).
WEIGHTED_METRICS: tuple[str, ...] = ("lpips", "fid", "facial", "landmarks")


ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"


INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)


_HASH_RE = re.compile(r"-([a-f0-9]{6,})\.")


class WeightsError(UserError):
    """Fetching or verifying weights failed; ``str(err)`` is the user's message."""


class MissingWeightsError(WeightsError):
    """Pretrained weights needed by the chosen metrics are not on this machine.

    ``missing`` lists the :class:`WeightFile` s; the message names each file's full path
    and the ``fetch-weights`` command."""

    def __init__(self, missing: Sequence[WeightFile], metrics: Sequence[str], leave_out: str | None = None) -> None:
        self.missing = list(missing)
        self.metrics = list(metrics)
        super().__init__(missing_message(self.missing, self.metrics, leave_out))


@dataclass(frozen=True)
class WeightFile:
    """One pretrained-weight file a metric loads.

    ``url`` (torch hub files) is fetched with torch hub's downloader and checked against
    ``sha256_prefix`` (the hash in the file name). ``bundled`` files ship inside an
    installed package: a missing one means a broken install (reinstall). py-feat files
    are fetched by :mod:`evaluation.metrics.facial`."""

    metric: str
    path: Path
    description: str
    url: str | None = None
    sha256_prefix: str | None = None
    bundled: bool = False

    @property
    def present(self) -> bool:
        try:
            return self.path.is_file() and self.path.stat().st_size > 0
        except OSError:
            return False


def _hub_checkpoints() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` as torch hub resolves it now (env read per call)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _hash_prefix(url: str) -> str | None:
    m = _HASH_RE.search(url.rsplit("/", 1)[-1])
    return m.group(1) if m else None


def lpips_files() -> list[WeightFile]:
    """LPIPS: torchvision's AlexNet backbone (torch hub cache) and the linear heads."""
    import lpips

    heads = Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / "alex.pth"
    return [
        WeightFile(
            "lpips",
            _hub_checkpoints() / ALEXNET_URL.rsplit("/", 1)[-1],
            "AlexNet backbone of LPIPS (torchvision ImageNet weights)",
            url=ALEXNET_URL,
            sha256_prefix=_hash_prefix(ALEXNET_URL),
        ),
        WeightFile("lpips", heads, "LPIPS v0.1 linear heads (ship with the lpips package)", bundled=True),
    ]


def fid_files() -> list[WeightFile]:
    """FID: torch-fidelity's Inception-v3 (torch hub cache)."""
    return [
        WeightFile(
            "fid",
            _hub_checkpoints() / INCEPTION_URL.rsplit("/", 1)[-1],
            "Inception-v3 of FID (torch-fidelity's port of the TF weights)",
            url=INCEPTION_URL,
            sha256_prefix=_hash_prefix(INCEPTION_URL),
        )
    ]


def normalise_metrics(metrics: Iterable[str] | str) -> list[str]:
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",") if m.strip()]
    out: list[str] = []
    for m in metrics:
        m = m.strip().lower()
        if m not in METRICS:
            raise ValueError(f"unknown metric {m!r}; expected some of {', '.join(METRICS)}")
        if m not in out:
            out.append(m)
    return out


def fetch_command(metrics: Iterable[str] | str) -> str:
    ms = [m for m in normalise_metrics(metrics) if m in WEIGHTED_METRICS] or list(WEIGHTED_METRICS)
    return f"python -m evaluation fetch-weights --metrics {','.join(ms)}"


#: How to do without the metrics, for the evaluation's command line.
LEAVE_OUT_EVALUATION = "Or leave these metrics out (--metrics); `python -m evaluation run --help` lists them."


def missing_message(missing: Sequence[WeightFile], metrics: Sequence[str], leave_out: str | None = None) -> str:
    """The message of :class:`MissingWeightsError`: every missing file and how to get it;
    ``leave_out`` says how to do without them where the caller is (default: the
    evaluation's ``--metrics``)."""
    need = [m for m in dict.fromkeys(w.metric for w in missing)]
    lines = [f"missing pretrained weights for {', '.join(need)} (nothing is downloaded automatically):"]
    for w in missing:
        src = f"; from {w.url}" if w.url else ""
        lines.append(f"  - {w.path}  [{w.metric}: {w.description}{src}]")
    bundled = [w for w in missing if w.bundled]
    fetchable = [w for w in missing if not w.bundled]
    if fetchable:
        lines.append("Fetch them once on a machine with network access:")
        lines.append(f"  {fetch_command(need)}")
        lines.append(
            "then copy them to the same paths here (torch hub files: TORCH_HOME="
            f"{os.environ.get('TORCH_HOME', '<unset: ~/.cache/torch>')})."
        )
        if any(w.metric == "facial" for w in fetchable):
            lines.append(
                "py-feat files live in ~/.cache/sensor-removal/feat (py-feat ignores HF_HOME); "
                "$SENSOR_REMOVAL_FEAT_CACHE points to another hub-cache folder."
            )
    if bundled:
        lines.append(
            "Files marked 'ship with' belong to an installed package: reinstall it (pip install --force-reinstall)."
        )
    lines.append(leave_out or LEAVE_OUT_EVALUATION)
    return "\n".join(lines)


def require_present(
    files: Sequence[WeightFile], metrics: Sequence[str], leave_out: str | None = None
) -> list[WeightFile]:
    """Raise :class:`MissingWeightsError` unless every one of ``files`` is present; returns them."""
    missing = [w for w in files if not w.present]
    if missing:
        raise MissingWeightsError(missing, metrics, leave_out)
    return list(files)
