"""One interface for every metric family of the protocol (:func:`evaluation.protocol.run_protocol`).

The pattern is detectron2's ``DatasetEvaluator`` (reset / process / evaluate) and
torchmetrics' ``update`` / ``compute``: a family is built for one run, *processes* the
frames of the decode-once pass (:mod:`evaluation.framepass`) through the
:class:`~evaluation.framepass.FrameConsumer` objects it hands out, and then *evaluates*:
:meth:`MetricFamily.evaluate` returns its result rows (:data:`evaluation.protocol.COLUMNS`)
— the same call for every family. A family that reads its own files instead (the ground
truth's aligned triples) hands out no consumer. ``run_protocol`` loops over a registry
of families; adding one touches its own module and that registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from evaluation.framepass import FrameConsumer
from evaluation.pairs import PairPlan
from evaluation.settings import ProtocolSettings
from sensor_removal.core.manifest import Recording, Subject

if TYPE_CHECKING:
    from evaluation.metrics.facial import FacialAnalyzer

__all__ = ["EvaluationRun", "FamilyDefaults", "MetricFamily"]


@dataclass(frozen=True)
class EvaluationRun:
    """What every family of one subject's evaluation may need, given once."""

    plan: PairPlan
    subject: Subject
    cleaned: Subject | None
    settings: ProtocolSettings
    out: Path
    crop_size: int
    log: Callable[[str], None]
    #: py-feat-like analyzer per AU model (tests, the app); None: built from the settings.
    facial_analyzer: Callable[[str], FacialAnalyzer] | None = None


class MetricFamily(Protocol):
    """One metric family in a run (module docstring)."""

    #: Name in the progress log (``lpips/fid``, ``facial``, ``groundtruth``, ...).
    name: str
    #: Key of :meth:`evaluate`'s time in ``summary.json``'s ``timings_s`` (None: not timed).
    timing: str | None

    def consumers(self) -> Sequence[FrameConsumer]:
        """What this family wants from the decode-once pass (empty: it reads its own files)."""
        ...

    def videos(self) -> Sequence[Recording] | None:
        """The recordings the pass must decode for it, in order, when more than the
        plan's (None: the plan's videos)."""
        ...

    def evaluate(self, run: EvaluationRun) -> list[dict]:
        """The family's result rows, once the pass is done."""
        ...

    def summary_fields(self) -> dict[str, object]:
        """Entries this family adds to ``summary.json`` (e.g. ``videos``, ``landmarks``)."""
        ...


class FamilyDefaults:
    """The defaults of :class:`MetricFamily` for a family that is its own single frame
    consumer: no extra videos, no summary entries, not timed."""

    timing: str | None = None

    def consumers(self) -> Sequence[FrameConsumer]:
        return [self]  # type: ignore[list-item]  # subclasses implement FrameConsumer

    def videos(self) -> Sequence[Recording] | None:
        return None

    def summary_fields(self) -> dict[str, object]:
        return {}
