"""The post-fit benchmark: when a fit ends, clean the subject and evaluate it.

After training, a post-fit hook cleans the subject's sensor videos and runs the
downstream benchmarks (docs/design.md, "Training"). A researcher then finds the paper's tables (Sec. 4, Tables 1–3)
for this subject in the run folder and on the W&B dashboard without running anything
else. The hook only wires together the one implementation of each step:
:func:`sensor_removal.clean.clean_subject`, :func:`evaluation.protocol.run_protocol`
and :func:`evaluation.report.make_report`.

Which metrics run is a config value: a CPU demo runs ``groundtruth`` only, a GPU node all
of ``lpips, fid, facial``. A failure (a missing weight, a broken video) is reported with
its cause and never touches the checkpoints, which were written before the hook runs.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn

from sensor_removal.benchmark_logging import log_benchmark, write_sample
from sensor_removal.callbacks import run_dir


@dataclass
class BenchmarkOutcome:
    """What the hook produced (``error`` is set when it failed)."""

    checkpoint: Path | None = None
    metrics: tuple[str, ...] = ()
    clean_dir: Path | None = None
    results_dir: Path | None = None
    report_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    error: str | None = None


def checkpoint_for_benchmark(trainer: pl.Trainer) -> Path | None:
    """The best checkpoint (lowest ``val/fid_clean`` when monitored), else the last."""
    cb = trainer.checkpoint_callback
    if cb is None:
        return None
    for candidate in (getattr(cb, "best_model_path", ""), getattr(cb, "last_model_path", "")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


#: The fit-side way to leave a benchmark metric out, named where its weights are missing.
BENCHMARK_WITHOUT = "Or leave these metrics out of the PostFitBenchmark callback's init_args.metrics in your config."


class PostFitBenchmark(pl.Callback):
    """When ``fit`` ends (rank 0 only): clean the subject's sensor recordings with the
    best checkpoint into ``<run>/clean``, evaluate with ``metrics`` into
    ``<run>/evaluation``, write the report into ``<run>/report`` and log to W&B what
    :mod:`sensor_removal.benchmark_logging` lists (headline scalars, tables, the results
    artifact, a sensor | cleaned sample clip).

    Args:
        metrics: any of ``lpips``, ``fid``, ``facial``, ``groundtruth``.
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
    """

    def __init__(
        self,
        metrics: list[str] = ["groundtruth"],  # noqa: B006 - LightningCLI needs a literal default
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
    ) -> None:
        from evaluation.weights import METRICS

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
        self.outcome: BenchmarkOutcome | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Say it now, not after hours of training: the hook will fail without weights.
        from evaluation.weights import MissingWeightsError, check_weights

        try:
            check_weights([m for m in self.metrics if m != "groundtruth"], leave_out=BENCHMARK_WITHOUT)
        except MissingWeightsError as exc:
            rank_zero_warn(f"the post-fit benchmark will fail unless these weights are fetched before the fit ends:\n{exc}")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.outcome = self.run(trainer)
        if self.outcome.error is not None and self.raise_on_failure:
            raise RuntimeError(self.outcome.error)

    def run(self, trainer: pl.Trainer) -> BenchmarkOutcome:
        """Clean, evaluate, report; never raises (the error is in the outcome)."""
        from evaluation.protocol import ProtocolSettings, run_protocol
        from evaluation.report import make_report
        from evaluation.weights import available_metrics, check_weights
        from sensor_removal.clean import clean_subject

        root = run_dir(trainer)
        error_file = root / "benchmark_error.txt"
        error_file.unlink(missing_ok=True)  # a previous run's failure is not this run's
        present = set(available_metrics())
        metrics = (*self.metrics, *(m for m in self.optional_metrics if m in present))
        outcome = BenchmarkOutcome(checkpoint=checkpoint_for_benchmark(trainer), metrics=metrics)
        try:
            if outcome.checkpoint is None:
                raise RuntimeError("no checkpoint was written (is a ModelCheckpoint configured?)")
            # Missing weights fail the evaluation anyway: say so before cleaning every video.
            check_weights([m for m in metrics if m != "groundtruth"])
            manifest = Path(trainer.datamodule.hparams.manifest)
            outcome.clean_dir = root / "clean"
            report = clean_subject(
                outcome.checkpoint, manifest, outcome.clean_dir,
                paste_back=self.paste_back, batch_size=self.batch_size, device=self.device, progress=True,
            )
            if not report.ok:
                raise RuntimeError("cleaning failed:\n" + report.summary())
            settings = ProtocolSettings(
                metrics=metrics,
                seed=self.seed,
                lpips_pairs=self.lpips_pairs,
                fid_sets=self.fid_sets,
                fid_set_size=self.fid_set_size,
                device=self.device,
                batch_size=self.batch_size,
                facial_stride=self.facial_stride,
            )
            outcome.results_dir = root / "evaluation"
            run_protocol(manifest, report.manifest, outcome.results_dir, settings)
            outcome.report_dir = root / "report"
            outcome.files = make_report([outcome.results_dir], outcome.report_dir)
            first = next(iter(report.results.values()), None)
            if first is not None:  # a few seconds of sensor | cleaned for the W&B run
                outcome.files["sample"] = write_sample(first.source, first.bbox, first.out, outcome.report_dir / "sample.mp4")
            self._log(trainer, outcome)
        except Exception as exc:  # noqa: BLE001 - reported, checkpoint kept
            outcome.error = f"post-fit benchmark failed: {exc}"
            where = f" The trained checkpoint is intact: {outcome.checkpoint}." if outcome.checkpoint else ""
            error_file.write_text(outcome.error + "\n\n" + traceback.format_exc())
            rank_zero_warn(f"{outcome.error.rstrip('.')}.{where} Details: {error_file}")
        return outcome

    @staticmethod
    def _log(trainer: pl.Trainer, outcome: BenchmarkOutcome) -> None:
        log_benchmark(list(trainer.loggers), outcome.files, outcome.results_dir)
