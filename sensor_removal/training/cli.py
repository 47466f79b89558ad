"""``python -m sensor_removal fit|validate|predict``: LightningCLI over :class:`CycleGAN`
and :class:`FramesDataModule` (the other commands and the top-level help live in
:mod:`sensor_removal.cli.commands`, which imports this module only for these three).

``conf/default.yaml`` (the paper's defaults, shipped with the package) is loaded first,
then ``--config`` files, then command-line overrides. The parser runs in jsonargparse's
``omegaconf+`` mode: ``${…}`` references are resolved once, after every override, so
``--trainer.default_root_dir DIR`` also moves the logger and the checkpoints that refer
to it (a plain ``omegaconf`` mode would resolve each file as it is loaded and miss later
overrides). Use relative references (``${..subject}``).

Top-level keys besides Lightning's: ``subject`` (names the run), ``perceptual_metrics``
(one switch for the LPIPS/FID callback) and ``progress_every_s`` (plain progress lines
when stdout is not a terminal). ``test`` is not offered: the model has no test step;
the evaluation protocol (``evaluate``) is the test of a subject.

A bad manifest or bad input ends with one clear message and exit code 2, never a
traceback; so does a full disk. SIGTERM (Stop in the app, SLURM before a kill) exits
143 and Ctrl-C 130 after ``interrupted.ckpt`` is written, never 0: scripts must not read
an interrupted fit as a finished one. Checkpoints are written atomically
(:mod:`sensor_removal.training.atomic_checkpoint`); ``--ckpt_path last`` starts from the run's
checkpoint with the most training that loads (:func:`~sensor_removal.core.checkpoint.resume_candidate`).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.plugins import CheckpointIO

from sensor_removal.core.checkpoint import (
    CheckpointError,
    read_checkpoint,
    resume_candidate,
    resume_differences,
    run_checkpoints,
)
from sensor_removal.core.configs import conf_dir, config_file
from sensor_removal.core.diskfull import disk_full, disk_full_message
from sensor_removal.core.errors import UserError
from sensor_removal.core.manifest import ManifestError
from sensor_removal.core.video import VideoError
from sensor_removal.training.data import DataSettingsError, FramesDataModule
from sensor_removal.training.frame_cache import FrameCacheError
from sensor_removal.training.module import CycleGAN
from sensor_removal.training.pool import PoolSettingsError
from sensor_removal.training.warmstart import init_state

if TYPE_CHECKING:
    from jsonargparse import Namespace

#: The shipped config folder (the CLI reads ``default.yaml`` from here).
CONF_DIR = conf_dir()
DEFAULT_CONFIG = config_file("default.yaml")
#: Strategy for more than one device: a GAN step leaves the other networks without
#: gradients, which plain DDP rejects ("parameters that were not used").
MULTI_DEVICE_STRATEGY = "ddp_find_unused_parameters_true"
#: The LPIPS/FID callback that ``perceptual_metrics: false`` removes.
PERCEPTUAL_CALLBACK = "sensor_removal.workflows.fit_metrics.PerceptualMetrics"
#: What ``subject`` says when the manifest was never set (``data.manifest: ???``).
NO_MANIFEST = (
    "no manifest given: set --data.manifest PATH (or data.manifest in your config); a list [A, B] trains "
    "one population model"
)
SUBCOMMANDS = ("fit", "validate", "predict")


class RunConfig(SaveConfigCallback):
    """Saves ``config.yaml`` into the run folder and hands the full resolved config
    (trainer, model, data, subject, …) plus the library versions to every logger, so a
    W&B run shows exactly what ran. (Model and data hyperparameters are not logged on
    their own: they are part of this config.)"""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        import yaml

        from sensor_removal.core.versions import library_versions

        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        config.pop("config", None)  # the list of --config files: paths, not settings
        for logger in trainer.loggers:
            logger.log_hyperparams({**config, "versions": library_versions()})


class SensorRemovalCLI(LightningCLI):
    """LightningCLI with the project's defaults and a ``subject`` name for the run."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {k: v for k, v in LightningCLI.subcommands().items() if k in SUBCOMMANDS}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--subject",
            type=str,
            default="subject",
            help="Name of the subject: the W&B run and group and the run folder refer to it.",
        )
        parser.add_argument(
            "--perceptual_metrics",
            type=bool,
            default=True,
            help="LPIPS/FID on the validation frames every epoch (needs AlexNet and Inception weights); "
            "false removes that callback and ranks checkpoints by epoch instead of val/fid_clean.",
        )
        parser.add_argument(
            "--progress_every_s",
            type=float,
            default=30.0,
            help="When stdout is not a terminal (a cluster log): seconds between plain progress lines.",
        )
        # The learning-rate rule of CycleGAN(lr_scaling=...) needs the batch size.
        parser.link_arguments("data.batch_size", "model.lr_batch_size")

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """Parse, then check ``--ckpt_path`` before anything is built: the file must be a
        checkpoint (loaded without running code), and for ``fit`` (a resume) the model and
        data options must be the checkpoint's (:mod:`sensor_removal.core.checkpoint`).
        Lightning then copies the checkpoint's model options over the command line's
        without a word; after this check that copy changes nothing for a resume."""
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        if not sub:
            return
        cfg = self.config[sub]
        path = _checkpoint_file(cfg.get("ckpt_path"), cfg.trainer.default_root_dir)
        if path is None:
            return
        if cfg.get("ckpt_path") == "last":
            cfg.ckpt_path = str(path)  # Lightning's own "last" takes the newest file, loadable or not
        ckpt = read_checkpoint(path)
        if sub != "fit":  # validate/test/predict may use other data; the model comes from the file
            return
        diffs = resume_differences(ckpt, _plain(cfg.model), _plain(cfg.data))
        if diffs:
            raise CheckpointError(
                f"{path}: resuming with options that differ from the checkpoint's:\n  "
                + "\n  ".join(diffs)
                + "\nA resume continues the same training: use the checkpoint's values, or start a new run "
                "(another --trainer.default_root_dir) without --ckpt_path."
            )

    def before_instantiate_classes(self) -> None:
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        if str(cfg.data.manifest) in ("???", "None", "", "[]"):
            raise ManifestError(NO_MANIFEST)
        self._resuming = self.subcommand == "fit" and _resumes(cfg)
        if self._resuming and cfg.model.get("init_from"):
            # A resume continues its own weights; the starting weights of the original fit
            # (which Lightning copies back from the checkpoint's options) are not loaded,
            # but stay recorded in the options as where the training began.
            print(f"note: resuming from {cfg.ckpt_path}: --model.init_from {cfg.model.init_from} is not used")
        elif self.subcommand == "fit" and cfg.model.get("init_from"):
            # The file and its architecture, checked before a cache or run file is written
            # (the module checks again when it loads the weights in setup).
            init_state(str(cfg.model.init_from), _plain(cfg.model), int(cfg.data.crop_size))
        trainer = cfg.trainer
        if trainer.strategy in ("auto", None, "ddp") and (_count(trainer.devices) > 1 or _count(trainer.num_nodes) > 1):
            trainer.strategy = MULTI_DEVICE_STRATEGY
        if not cfg.perceptual_metrics:
            _without_perceptual_metrics(trainer)
        loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
        for logger in loggers:
            if _class_path(logger).endswith("WandbLogger"):  # the W&B run and group are named after the subject
                for key in ("name", "group"):
                    if logger.init_args.get(key) is None:
                        logger.init_args[key] = cfg.subject
        if trainer.default_root_dir:
            Path(trainer.default_root_dir).mkdir(parents=True, exist_ok=True)  # W&B looks for it at init

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        if getattr(self, "_resuming", False) and isinstance(self.model, CycleGAN):
            self.model.resuming = True

    def instantiate_trainer(self, **kwargs) -> Trainer:
        cfg = self.config_init.get(self.subcommand) if self.subcommand else self.config_init
        callbacks = list(cfg.trainer.get("callbacks") or [])
        if cfg.trainer.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):
            from sensor_removal.training.progress_bars import progress_bar_for

            kwargs["callbacks"] = [*callbacks, progress_bar_for(every_s=cfg.progress_every_s)]
        plugins = cfg.trainer.get("plugins")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            from sensor_removal.training.atomic_checkpoint import AtomicCheckpointIO

            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        trainer = super().instantiate_trainer(**kwargs)
        from sensor_removal.core.noise import drop_wandb_anonymous

        for logger in trainer.loggers:
            drop_wandb_anonymous(logger)
        return trainer


def _class_path(node: object) -> str:
    return str(getattr(node, "class_path", "") or "")


def _without_perceptual_metrics(trainer: Namespace) -> None:
    """Drop the LPIPS/FID callback; a checkpoint that ranks by its metrics keeps every
    epoch's last state instead (``monitor`` off), since nothing else logs them."""
    callbacks = list(getattr(trainer, "callbacks", None) or [])
    kept = [c for c in callbacks if _class_path(c) != PERCEPTUAL_CALLBACK]
    for c in kept:
        args = getattr(c, "init_args", None)
        if args is not None and str(args.get("monitor") or "").startswith(("val/fid", "val/lpips")):
            args.monitor = None
            args.mode = "min"
            if "{val/" in str(args.get("filename") or ""):
                args.filename = "epoch{epoch:03d}"
    trainer.callbacks = kept


def _checkpoint_file(ckpt_path: object, root_dir: object) -> Path | None:
    """The file ``--ckpt_path`` names: a path, or for ``last`` the run folder's
    checkpoint with the most training that loads (none: a fresh start, as Lightning does;
    files that all fail to load: an error naming them). Other special values are left to
    Lightning."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        files = run_checkpoints(str(root_dir or "."))
        found = resume_candidate(files)
        if found is None and files:
            raise CheckpointError(
                "--ckpt_path last: no checkpoint of the run loads ("
                + ", ".join(str(f) for f in files)
                + "); give one with --ckpt_path PATH or start a new run"
            )
        return found
    if ckpt_path in ("best", "hpc") or str(ckpt_path).startswith("registry"):
        return None
    return Path(str(ckpt_path))


def _resumes(cfg: object) -> bool:
    """Whether a ``fit`` config resumes from a checkpoint file (``parse_arguments`` has
    already turned ``last`` into the file, or left it when the run has none)."""
    ckpt = getattr(cfg, "ckpt_path", None)
    return bool(ckpt) and ckpt != "last" and Path(str(ckpt)).is_file()


def _plain(section: object) -> dict:
    """A config section (jsonargparse Namespace) as a flat dict of its values."""
    return dict(vars(section)) if section is not None else {}


def _count(value: object) -> int:
    """Number of devices/nodes a Trainer argument asks for (1 when unknown: 'auto')."""
    if isinstance(value, (list, tuple)):
        return len(value)
    if isinstance(value, str) and "," in value:
        return len([v for v in value.split(",") if v.strip()])
    try:
        return int(value)  # type: ignore[call-overload]  # any value: int() decides, TypeError means unknown
    except (TypeError, ValueError):
        return 1


def build_cli(args: list[str] | None = None) -> SensorRemovalCLI:
    """The project's LightningCLI: a subcommand (``fit``, ``validate``, ``predict``) with
    ``conf/default.yaml`` loaded first. Every caller, the demo included, goes through the
    subcommand parsers, so a key of ``default.yaml`` that only they accept (e.g.
    ``weights_only``, an argument of ``Trainer.fit``) can never break one path alone."""
    defaults = {"default_config_files": [str(DEFAULT_CONFIG)]}
    parser_kwargs = {"parser_mode": "omegaconf+", **{n: dict(defaults) for n in SUBCOMMANDS}}
    with warnings.catch_warnings():
        # Explicit arguments (tests, the demo) are meant to replace the process's own.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return SensorRemovalCLI(
            CycleGAN,
            FramesDataModule,
            parser_kwargs=parser_kwargs,
            save_config_callback=RunConfig,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            auto_configure_optimizers=False,
            args=args,
        )


#: Exit codes of an interrupted fit: 128 + the signal number, as a shell reports it.
INTERRUPTED_EXIT = {"SIGTERM": 143, "SIGINT": 130}
RESUME_HINT = " (checkpoints/interrupted.ckpt once training had begun); continue with --ckpt_path last"

#: Errors a user can cause before or during a fit: one message, exit code 2.
#: ``UserError``: every layer's own (``WeightsError`` of the fit-time metrics, ``CleanError``, ...).
USER_ERRORS = (
    UserError,
    ManifestError,
    VideoError,
    CheckpointError,
    DataSettingsError,
    FrameCacheError,
    PoolSettingsError,
)


def run_cli(argv: list[str] | None) -> tuple[int, SensorRemovalCLI | None]:
    """Run a subcommand (``fit``, ``validate``, …) through :func:`build_cli`; return the
    exit code and the CLI (its trainer, model and callbacks), or ``None`` on a user error.
    The demo goes through here too, so it parses exactly what ``fit`` parses."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    try:
        return 0, build_cli(argv)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
    except SIGTERMException:
        print(f"interrupted by SIGTERM{RESUME_HINT}", file=sys.stderr)
        return INTERRUPTED_EXIT["SIGTERM"], None
    except SystemExit as exc:
        if not isinstance(exc.__context__, KeyboardInterrupt):  # Lightning exits 1 after Ctrl-C
            raise
        print(f"interrupted by SIGINT{RESUME_HINT}", file=sys.stderr)
        return INTERRUPTED_EXIT["SIGINT"], None
    except KeyboardInterrupt:  # before Lightning's trainer runs (parsing, cache check)
        print("interrupted by SIGINT", file=sys.stderr)
        return INTERRUPTED_EXIT["SIGINT"], None
    except Exception as exc:
        full = disk_full(exc)
        if full is not None:
            print(
                f"error: {disk_full_message(full, 'the run')}. Checkpoints are written whole or not at all: "
                "the ones there load; continue with --ckpt_path last",
                file=sys.stderr,
            )
            return 2, None
        if not _is_wandb_login_error(exc):
            raise
        print(
            f"error: Weights & Biases: {exc}\nOn a machine without network or login, set WANDB_MODE=offline "
            "(runs are kept under <run>/wandb; `wandb sync` uploads them later).",
            file=sys.stderr,
        )
    return 2, None


def _lightning_main(argv: list[str] | None) -> int:
    return run_cli(argv)[0]


def _is_wandb_login_error(exc: Exception) -> bool:
    """W&B's ``UsageError`` (no API key, not offline); wandb is imported only when W&B
    is in use already (it is slow to import, and ``--help`` does not need it)."""
    if "wandb" not in sys.modules:
        return False
    from wandb.errors import UsageError

    return isinstance(exc, UsageError)


def lightning_main(argv: list[str] | None = None) -> int:
    """``fit`` / ``validate`` / ``predict`` (``argv`` starts with the subcommand; ``None``:
    LightningCLI reads ``sys.argv`` itself)."""
    return _lightning_main(argv)


if __name__ == "__main__":
    raise SystemExit(lightning_main())
