"""``python -m sensor_removal`` — one entry point for the training side.

* ``fit`` / ``validate`` / ``predict``: LightningCLI over :class:`CycleGAN` and
  :class:`FramesDataModule`. ``conf/default.yaml`` (the paper's defaults) is loaded first,
  then ``--config`` files, then command-line overrides. The parser runs in jsonargparse's
  ``omegaconf+`` mode: ``${…}`` references are resolved once, after every override, so
  ``--trainer.default_root_dir DIR`` also moves the logger and the checkpoints that
  refer to it (NOTES.md "Lightning"). Use relative references (``${..subject}``).
* ``synth``: build the synthetic subject (:mod:`sensor_removal.synthetic`).
* ``clean``: clean whole videos with a trained generator (:mod:`sensor_removal.clean`).
* ``demo``: synthetic subject → fit → clean → evaluation (:mod:`sensor_removal.demo`).

A bad manifest or bad input ends with one clear message and exit code 2, never a
traceback.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from wandb.errors import UsageError as WandbUsageError

from evaluation.weights import WeightsError
from sensor_removal.data import FramesDataModule
from sensor_removal.manifest import ManifestError
from sensor_removal.module import CycleGAN
from sensor_removal.video import VideoError

#: The repository's config folder (the CLI reads ``default.yaml`` from here).
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
DEFAULT_CONFIG = CONF_DIR / "default.yaml"
#: Strategy for more than one device: a GAN step leaves the other networks without
#: gradients, which plain DDP rejects (NOTES.md "Lightning").
MULTI_DEVICE_STRATEGY = "ddp_find_unused_parameters_true"


class SensorRemovalCLI(LightningCLI):
    """LightningCLI with the project's defaults and a ``subject`` name for the run."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--subject",
            type=str,
            default="subject",
            help="Name of the subject: the W&B group and the run folder refer to it.",
        )

    def before_instantiate_classes(self) -> None:
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        trainer = cfg.trainer
        if trainer.strategy in ("auto", None, "ddp") and (
            _count(trainer.devices) > 1 or _count(trainer.num_nodes) > 1
        ):
            trainer.strategy = MULTI_DEVICE_STRATEGY


def _count(value: object) -> int:
    """Number of devices/nodes a Trainer argument asks for (1 when unknown: 'auto')."""
    if isinstance(value, (list, tuple)):
        return len(value)
    if isinstance(value, str) and "," in value:
        return len([v for v in value.split(",") if v.strip()])
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 1


def build_cli(args: list[str] | None = None) -> SensorRemovalCLI:
    """The project's LightningCLI: a subcommand (``fit``, ``validate``, …) with
    ``conf/default.yaml`` loaded first. Every caller, the demo included, goes through the
    subcommand parsers, so a key of ``default.yaml`` that only they accept (e.g.
    ``weights_only``, an argument of ``Trainer.fit``) can never break one path alone."""
    defaults = {"default_config_files": [str(DEFAULT_CONFIG)] if DEFAULT_CONFIG.is_file() else []}
    parser_kwargs = {"parser_mode": "omegaconf+", **{n: dict(defaults) for n in ("fit", "validate", "test", "predict")}}
    with warnings.catch_warnings():
        # Explicit arguments (tests, the demo) are meant to replace the process's own.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return SensorRemovalCLI(
            CycleGAN,
            FramesDataModule,
            parser_kwargs=parser_kwargs,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            auto_configure_optimizers=False,
            args=args,
        )


#: Errors a user can cause before or during a fit: one message, exit code 2.
USER_ERRORS = (ManifestError, VideoError, WeightsError)


def run_cli(argv: list[str] | None) -> tuple[int, SensorRemovalCLI | None]:
    """Run a subcommand (``fit``, ``validate``, …) through :func:`build_cli`; return the
    exit code and the CLI (its trainer, model and callbacks), or ``None`` on a user error.
    The demo goes through here too, so it parses exactly what ``fit`` parses."""
    try:
        return 0, build_cli(argv)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
    except WandbUsageError as exc:
        print(
            f"error: Weights & Biases: {exc}\nOn a machine without network or login, set WANDB_MODE=offline "
            "(runs are kept under <run>/wandb; `wandb sync` uploads them later).",
            file=sys.stderr,
        )
    return 2, None


def _lightning_main(argv: list[str] | None) -> int:
    return run_cli(argv)[0]


def main(argv: list[str] | None = None) -> int:
    explicit = argv is not None
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    if command == "synth":
        from sensor_removal.synthetic import main as synth_main

        return synth_main(argv[1:])
    if command == "demo":
        from sensor_removal.demo import main as demo_main

        return demo_main(argv[1:])
    if command == "clean":
        from sensor_removal.clean import main as clean_main

        return clean_main(argv[1:])
    if command == "sweep":
        from sensor_removal.sweep import main as sweep_main

        return sweep_main(argv[1:])
    # LightningCLI reads sys.argv itself unless given explicit arguments.
    return _lightning_main(argv if explicit else None)


if __name__ == "__main__":
    raise SystemExit(main())
