"""The post-fit benchmark: when a fit ends, clean the subject and evaluate it.

After training, a post-fit hook cleans the subject's sensor videos and runs the
downstream benchmarks (docs/design.md, "Training"). A researcher then finds the paper's tables (Sec. 4, Tables 1–3)
for this subject in the run folder and on the W&B dashboard without running anything
else. When the hook composites (``composite="auto"``, ours, like ``clean``), the paper's
tables are computed on the paper's method — the full repaint kept next to each cleaned
video (``NAME.repaint.mp4``, :func:`~sensor_removal.cleaning.write_repaint_manifest`) —
into ``<run>/evaluation``, and once more on the composited videos into
``<run>/evaluation_ours``; the report shows the second set in a section labelled as our
extension and W&B under ``ours/``, so that no paper-style number silently changes meaning.
With ``composite="off"`` only the paper's evaluation runs. The hook only wires together
the one implementation of each step:
:func:`sensor_removal.cleaning.clean_subject`, :func:`evaluation.protocol.run_protocol`
and :func:`evaluation.report.make_report`.

Which metrics run is a config value: a CPU demo runs ``groundtruth`` and ``landmarks``
(no downloads), a GPU node all of ``lpips, fid, facial, landmarks``. A failure (a missing weight,
a broken video) is reported with its cause and never touches the checkpoints, which were written before the hook runs.
"""

from __future__ import annotations

import shutil
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn

from sensor_removal.cleaning.mask import MaskSettings
from sensor_removal.cleaning.options import CleanOptions
from sensor_removal.cleaning.settings import DEFAULT_COMPOSITE, DEFAULT_MASK_METHOD, DEFAULT_STEADY
from sensor_removal.cleaning.steady import SteadySettings
from sensor_removal.training.callbacks import run_dir
from sensor_removal.workflows.benchmark_logging import log_benchmark, write_sample


@dataclass
class BenchmarkOutcome:
    """What the hook produced (``error`` is set when it failed)."""

    checkpoint: Path | None = None
    metrics: tuple[str, ...] = ()
    clean_dir: Path | None = None
    results_dir: Path | None = None
    #: The evaluation of our composited videos (None with ``composite="off"``).
    ours_results_dir: Path | None = None
    report_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    #: Wall time of each step (``clean``, ``evaluate``, ``evaluate_ours``, ``report``).
    timings_s: dict[str, float] = field(default_factory=dict)
    error: str | None = None


#: Which checkpoint the hook cleans with: ``last`` (the paper: the generator after the
#: final epoch) or ``best`` (lowest monitored metric, e.g. ``val/fid_clean``; ours).
CHECKPOINT_CHOICES: tuple[str, ...] = ("last", "best")
#: Frames per side a FID needs before it can pick a model (the paper's N = 128).
MIN_FID_FRAMES = 128


def population_fit(trainer: pl.Trainer) -> bool:
    """Whether the fit trains on a list of manifests (a population model, ours): there is
    no one subject to clean and evaluate, so the post-fit benchmark does not run."""
    datamodule = getattr(trainer, "datamodule", None)
    manifest = getattr(getattr(datamodule, "hparams", None), "get", lambda _k: None)("manifest")
    return isinstance(manifest, (list, tuple))


def checkpoint_for_benchmark(trainer: pl.Trainer, which: str = "last") -> Path | None:
    """The checkpoint to clean with: ``last`` — the final epoch's (``last.ckpt``, what
    the paper evaluated: the generator after epoch 30); ``best`` — the one with the best
    monitored metric. None when that file was not written (no fallback to the other)."""
    cb = trainer.checkpoint_callback
    if cb is None:
        return None
    candidate = getattr(cb, "last_model_path" if which == "last" else "best_model_path", "")
    return Path(candidate) if candidate and Path(candidate).is_file() else None


def check_best_by_metric(trainer: pl.Trainer) -> None:
    """Selecting the checkpoint by ``val/fid_clean`` is only meaningful with a full-size
    FID: require a :class:`~sensor_removal.workflows.fit_metrics.PerceptualMetrics` with sets of at
    least :data:`MIN_FID_FRAMES` frames and as many extra held-out frames per domain
    (drawn outside the training sample; the validation split alone has ~10 % of 2 % of
    the frames, often fewer than 128). Raises ``ValueError`` naming the settings."""
    from sensor_removal.workflows.fit_metrics import PerceptualMetrics

    metrics = [cb for cb in trainer.callbacks if isinstance(cb, PerceptualMetrics)]  # type: ignore[attr-defined]  # Lightning sets it at run time
    if not metrics:
        raise ValueError(
            "PostFitBenchmark(checkpoint='best') needs the PerceptualMetrics callback (it measures val/fid_clean)"
        )
    m = metrics[0]
    if m.fid_set_size < MIN_FID_FRAMES or m.heldout_frames < MIN_FID_FRAMES:
        raise ValueError(
            f"PostFitBenchmark(checkpoint='best') picks the model by FID, which needs sets of >= {MIN_FID_FRAMES} "
            f"frames: set PerceptualMetrics fid_set_size >= {MIN_FID_FRAMES} (now {m.fid_set_size}) and "
            f"heldout_frames >= {MIN_FID_FRAMES} (now {m.heldout_frames}), or clean with checkpoint='last' (the paper)"
        )


#: The second evaluation's folder next to ``<run>/evaluation``: our composited videos.
OURS_RESULTS = "evaluation_ours"

#: The fit-side way to leave a benchmark metric out, named where its weights are missing.
BENCHMARK_WITHOUT = "Or leave these metrics out of the PostFitBenchmark callback's init_args.metrics in your config."


class PostFitBenchmark(pl.Callback):
    """When ``fit`` ends (rank 0 only): clean the subject's sensor recordings with the
    final epoch's checkpoint (the paper's model; ``checkpoint="best"``: the best by the
    monitored metric, see :func:`check_best_by_metric`) into ``<run>/clean``, evaluate with ``metrics`` into
    ``<run>/evaluation`` (the paper's full repaint) and, when compositing, into ``<run>/evaluation_ours``
    (the composited videos), write the report into ``<run>/report`` and log to W&B what
    :mod:`sensor_removal.workflows.benchmark_logging` lists (headline scalars, tables, the results
    artifact, a sensor | cleaned sample clip).

    Args:
        metrics: any of ``lpips``, ``fid``, ``facial``, ``groundtruth``, ``landmarks``, ``temporal``
            (dlib's 68 points; its models ship with a package, so it runs everywhere).
        optional_metrics: metrics to add when their pretrained weights are on this machine
            when the hook runs (the demo: LPIPS/FID/py-feat where fetched, else not). Which
            ran is in the outcome and the results; a missing weight of ``metrics`` is
            still an error.
        batch_size: frames per generator / metric batch.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        paste_back: also write full frames with the cleaned face pasted back.
        lpips_pairs: LPIPS frame pairs per comparison.
        fid_sets: FID draws per comparison (sets of ``fid_set_size`` frames; paper N = 128).
        fid_set_size: frames per FID set.
        facial_stride: analyse every n-th frame with py-feat.
        seed: seed of the evaluation's frame draws.
        raise_on_failure: re-raise a benchmark failure after reporting it (the fit's
            checkpoints stay either way).
        checkpoint: ``last`` (default; the paper cleans with the generator after the
            final epoch) or ``best`` (ours: lowest monitored metric; needs a full-size
            validation FID, checked when the fit starts).
        au_models: py-feat AU models of the facial metrics (default: ``xgb`` and
            ``v2``, one classical and one deep model as the paper's Table 2).
        composite: ``auto`` (default, as ``clean``; our extension): the cleaned videos keep
            every pixel outside an estimated sensor mask (:mod:`sensor_removal.cleaning.mask`);
            the full repaint is kept next to each as ``NAME.repaint.mp4`` and the mask as
            ``NAME.mask.mp4``. The paper's tables are computed on the repaints
            (``<run>/evaluation``) and the same tables on the composited videos
            (``<run>/evaluation_ours``; there the ground-truth table compares S, full
            repaint and composited C). ``off``: the paper's full repaint only, evaluated once.
        mask_threshold: change (8-bit levels) above which a pixel is sensor.
        mask_dilate: dilation of the mask, fraction of the crop side.
        mask_hysteresis: temporal hysteresis of the mask (1: off).
        mask_method: ``change`` (what the generator changed) or ``reference`` (ours, too:
            also colours the subject's normal recordings never show at that place;
            docs/compositing.md has both measured).
        mask_novelty: ``reference`` only — colour distance at which a pixel is fully sensor.
        steady: ours — strength in [0, 1) of the motion-adaptive filter that carries the
            repainted pixels over from frame to frame where the face did not move
            (:mod:`sensor_removal.cleaning.steady`); None (default): ``clean``'s rule, 0.9
            with compositing and off (0, the paper) with ``composite="off"``.
        steady_motion: frame-to-frame change (8-bit levels) that counts as motion.

    The init args are flat (21 of them) on purpose: LightningCLI builds the config schema
    from this typed signature, and these are the config keys. They are gathered once, in
    ``__init__``, into the :class:`~sensor_removal.cleaning.CleanOptions` the hook cleans with.
    """

    def __init__(
        self,
        metrics: list[str] = ["groundtruth", "landmarks"],  # noqa: B006 - LightningCLI needs a literal default
        optional_metrics: list[str] = [],  # noqa: B006
        batch_size: int = 8,
        device: str = "auto",
        paste_back: bool = False,
        lpips_pairs: int = 100,
        fid_sets: int = 5,
        fid_set_size: int = 128,
        facial_stride: int = 1,
        seed: int = 0,
        raise_on_failure: bool = False,
        checkpoint: str = "last",
        au_models: list[str] = ["xgb", "v2"],  # noqa: B006 - LightningCLI needs a literal default
        composite: str = DEFAULT_COMPOSITE,
        mask_threshold: float = MaskSettings.threshold,
        mask_dilate: float = MaskSettings.dilate,
        mask_hysteresis: float = MaskSettings.hysteresis,
        mask_method: Literal["change", "reference"] = DEFAULT_MASK_METHOD,
        mask_novelty: float = MaskSettings.novelty,
        steady: float | None = None,
        steady_motion: float = SteadySettings.motion,
    ) -> None:

        from evaluation.weight_files import METRICS

        unknown = [m for m in [*metrics, *optional_metrics] if m not in METRICS]
        if unknown:
            raise ValueError(f"PostFitBenchmark: unknown metric(s) {unknown}; expected some of {list(METRICS)}")
        self.metrics = list(metrics)
        self.optional_metrics = [m for m in optional_metrics if m not in metrics]
        self.batch_size = batch_size
        self.device = device
        self.paste_back = paste_back
        self.lpips_pairs = lpips_pairs
        self.fid_sets = fid_sets
        self.fid_set_size = fid_set_size
        self.facial_stride = facial_stride
        self.seed = seed
        self.raise_on_failure = raise_on_failure
        if checkpoint not in CHECKPOINT_CHOICES:
            raise ValueError(
                f"PostFitBenchmark: checkpoint must be one of {list(CHECKPOINT_CHOICES)}, got {checkpoint!r}"
            )
        self.checkpoint = checkpoint
        from evaluation.metrics.facial import AU_MODELS

        if not au_models or any(m not in AU_MODELS for m in au_models):
            raise ValueError(f"PostFitBenchmark: au_models must be names out of {list(AU_MODELS)}, got {au_models}")
        self.au_models = list(au_models)
        if composite not in ("auto", "off"):
            raise ValueError(f"PostFitBenchmark: composite must be 'auto' or 'off', got {composite!r}")
        # How the hook cleans, built (and so checked) once, when the config is read: the
        # flat init args stay because LightningCLI builds the config schema from them.
        self.clean_options = CleanOptions(
            paste_back=paste_back,
            batch_size=batch_size,
            device=device,
            progress=True,
            composite=composite,  # type: ignore[arg-type]  # checked above
            mask=MaskSettings(
                threshold=mask_threshold,
                dilate=mask_dilate,
                hysteresis=mask_hysteresis,
                method=mask_method,
                novelty=mask_novelty,
            ),
            mask_video=True,
            keep_repaint=True,
            steady=SteadySettings(
                strength=(DEFAULT_STEADY if composite == "auto" else 0.0) if steady is None else steady,
                motion=steady_motion,
            ),
        )
        self.outcome: BenchmarkOutcome | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Say it now, not after hours of training: the hook will fail without weights.
        from evaluation.weight_files import MissingWeightsError

        if population_fit(trainer):
            return  # nothing to benchmark (on_fit_end says so)
        if self.checkpoint == "best":
            check_best_by_metric(trainer)  # a config error: the fit does not start

        try:
            self._check_weights()
        except MissingWeightsError as exc:
            rank_zero_warn(
                f"the post-fit benchmark will fail unless these weights are fetched before the fit ends:\n{exc}"
            )

    def _check_weights(self, metrics: Sequence[str] | None = None) -> None:
        """Raise ``MissingWeightsError`` unless the weights of every one of ``metrics``
        (default: ``self.metrics``) are here (py-feat's for every AU model)."""
        from evaluation.weights import check_weights

        metrics = self.metrics if metrics is None else metrics
        check_weights([m for m in metrics if m not in ("groundtruth", "facial")], leave_out=BENCHMARK_WITHOUT)
        if "facial" in metrics:
            for model in self.au_models:
                check_weights(["facial"], feat_model_set=model, leave_out=BENCHMARK_WITHOUT)

    def _weights_present(self, metric: str) -> bool:
        from evaluation.weight_files import MissingWeightsError

        try:
            self._check_weights([metric])
        except MissingWeightsError:
            return False
        return True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if population_fit(trainer):
            rank_zero_warn(
                "post-fit benchmark skipped: a population fit (a list of data.manifest) belongs to no one "
                "subject; benchmark the per-subject fits that start from it (--model.init_from)"
            )
            self.outcome = BenchmarkOutcome()
            return
        self.outcome = self.run(trainer)
        if self.outcome.error is not None and self.raise_on_failure:
            raise RuntimeError(self.outcome.error)

    def run(self, trainer: pl.Trainer) -> BenchmarkOutcome:
        """Clean, evaluate, report; never raises (the error is in the outcome)."""
        from evaluation.protocol import run_protocol
        from evaluation.report import make_report
        from evaluation.settings import ProtocolSettings
        from sensor_removal.cleaning import REPAINT_MANIFEST, clean_subject, write_repaint_manifest

        root = run_dir(trainer)
        error_file = root / "benchmark_error.txt"
        error_file.unlink(missing_ok=True)  # a previous run's failure is not this run's
        metrics = (*self.metrics, *(m for m in self.optional_metrics if self._weights_present(m)))
        outcome = BenchmarkOutcome(checkpoint=checkpoint_for_benchmark(trainer, self.checkpoint), metrics=metrics)
        try:
            if outcome.checkpoint is None:
                need = (
                    "a ModelCheckpoint with save_last=True"
                    if self.checkpoint == "last"
                    else "a ModelCheckpoint with a monitor"
                )
                raise RuntimeError(f"no {self.checkpoint} checkpoint was written (is {need} configured?)")
            # Missing weights fail the evaluation anyway: say so before cleaning every video.
            self._check_weights(metrics)
            manifest = Path(trainer.datamodule.hparams.manifest)  # type: ignore[attr-defined]  # Lightning sets it at run time
            outcome.clean_dir = root / "clean"
            t0 = time.perf_counter()
            report = clean_subject(outcome.checkpoint, manifest, outcome.clean_dir, options=self.clean_options)
            if not report.ok:
                raise RuntimeError("cleaning failed:\n" + report.summary())
            if report.manifest is None:
                raise RuntimeError(f"cleaning wrote no manifest of cleaned recordings into {outcome.clean_dir}")
            # The paper's method is the full repaint: kept next to our composited (or
            # steadied) videos, it gets the paper's tables; ours get the same tables apart.
            options = self.clean_options
            repaints = None
            if options.compositing or options.steadied:
                repaints = write_repaint_manifest(report.manifest)
                if repaints is None:
                    raise RuntimeError(f"cleaning kept no full repaint (NAME.repaint.mp4) in {outcome.clean_dir}")
            else:  # a previous run's repaints are not this run's videos
                (report.manifest.parent / REPAINT_MANIFEST).unlink(missing_ok=True)
            outcome.timings_s["clean"] = time.perf_counter() - t0
            settings = ProtocolSettings(
                metrics=metrics,
                seed=self.seed,
                lpips_pairs=self.lpips_pairs,
                fid_sets=self.fid_sets,
                fid_set_size=self.fid_set_size,
                device=self.device,
                batch_size=self.batch_size,
                facial_stride=self.facial_stride,
                au_models=tuple(self.au_models),
                # one py-feat cache for both evaluations: its entries are keyed by the video's
                # content, so the second analyses only the composited videos, not N and S again
                facial_cache=root / "evaluation" / "facial_cache",
                landmark_cache=root / "evaluation" / "landmark_cache",  # the same for dlib's landmarks
            )
            outcome.results_dir = root / "evaluation"
            ours = root / OURS_RESULTS
            shutil.rmtree(ours, ignore_errors=True)  # a previous run's is not this run's
            t0 = time.perf_counter()
            run_protocol(manifest, report.manifest if repaints is None else repaints, outcome.results_dir, settings)
            outcome.timings_s["evaluate"] = time.perf_counter() - t0
            if repaints is not None:
                t0 = time.perf_counter()
                run_protocol(manifest, report.manifest, ours, settings)
                outcome.timings_s["evaluate_ours"] = time.perf_counter() - t0
                outcome.ours_results_dir = ours
            outcome.report_dir = root / "report"
            t0 = time.perf_counter()
            outcome.files = make_report(
                [outcome.results_dir],
                outcome.report_dir,
                composited=[] if outcome.ours_results_dir is None else [outcome.ours_results_dir],
            )
            outcome.timings_s["report"] = time.perf_counter() - t0
            first = next(iter(report.results.values()), None)
            if first is not None:  # a few seconds of sensor | cleaned for the W&B run
                outcome.files["sample"] = write_sample(
                    first.source, first.bbox, first.out, outcome.report_dir / "sample.mp4"
                )
            self._log(trainer, outcome)
        except Exception as exc:  # noqa: BLE001 - reported, checkpoint kept
            outcome.error = f"post-fit benchmark failed: {exc}"
            where = f" The trained checkpoint is intact: {outcome.checkpoint}." if outcome.checkpoint else ""
            error_file.write_text(outcome.error + "\n\n" + traceback.format_exc())
            rank_zero_warn(f"{outcome.error.rstrip('.')}.{where} Details: {error_file}")
        return outcome

    @staticmethod
    def _log(trainer: pl.Trainer, outcome: BenchmarkOutcome) -> None:
        log_benchmark(list(trainer.loggers), outcome.files, outcome.results_dir, outcome.ours_results_dir)
