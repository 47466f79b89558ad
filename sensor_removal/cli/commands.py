"""``python -m sensor_removal`` (and the ``sensor-removal`` script): one entry point, one
help screen that lists every command with its purpose.

The registry :data:`COMMANDS` names each command's module and function as text, so this
module imports nothing heavy: the top-level ``--help`` and every plain command's
``--help`` answer without loading PyTorch, Lightning or W&B. A command is listed only
when its module is part of this installation, so adding one (``bbox``, ``sweep``) is one
line here plus its module.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass

PROG = "python -m sensor_removal"


@dataclass(frozen=True)
class Command:
    """One subcommand: ``target`` is ``"module:function"``; the function takes the
    arguments after the command name and returns the exit code. ``passes_name``: the
    function wants the command name too (the LightningCLI subcommands)."""

    name: str
    purpose: str
    target: str
    passes_name: bool = False

    @property
    def module(self) -> str:
        return self.target.split(":")[0]

    def available(self) -> bool:
        """Whether its module is part of this installation (checked without importing it)."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False

    def run(self, argv: list[str] | None) -> int:
        module, function = self.target.split(":")
        entry = getattr(importlib.import_module(module), function)
        if self.passes_name:
            return entry(None if argv is None else [self.name, *argv])
        return entry(sys.argv[2:] if argv is None else argv)


#: Every command, in the order a newcomer meets them.
COMMANDS: tuple[Command, ...] = (
    Command(
        "demo",
        "synthetic subject -> train -> clean -> evaluate -> report, on a CPU in minutes",
        "sensor_removal.workflows.demo:main",
    ),
    Command(
        "synth",
        "render the built-in synthetic subject (videos, ground truth, masks, manifest)",
        "sensor_removal.synthetic:main",
    ),
    Command(
        "bbox",
        "propose one fixed square face bbox per session, printed in manifest syntax, with a preview PNG",
        "sensor_removal.cli.bbox:main",
    ),
    Command(
        "fit",
        "train one subject's CycleGAN (LightningCLI; --config, --data.manifest, --subject)",
        "sensor_removal.training.cli:lightning_main",
        passes_name=True,
    ),
    Command(
        "validate",
        "run the validation loop of a checkpoint (--ckpt_path)",
        "sensor_removal.training.cli:lightning_main",
        passes_name=True,
    ),
    Command(
        "predict",
        "G_S->N on the validation frames of a checkpoint (--ckpt_path)",
        "sensor_removal.training.cli:lightning_main",
        passes_name=True,
    ),
    Command("clean", "remove the sensors from whole videos with a trained generator", "sensor_removal.cli.clean:main"),
    Command(
        "evaluate",
        "the paper's evaluation: run, report, fetch-weights, weights (= python -m evaluation)",
        "evaluation.cli:main",
    ),
    Command(
        "emg",
        "synchronised sEMG: fit | predict | report the expression <-> muscle mapping (ours)",
        "sensor_removal.emg.cli:main",
    ),
    Command(
        "sweep",
        "train many subjects / settings as a SLURM job array (submitit) or locally",
        "sensor_removal.cluster.submit:main",
    ),
)


def available_commands() -> list[Command]:
    return [c for c in COMMANDS if c.available()]


def top_level_help() -> str:
    commands = available_commands()
    width = max(len(c.name) for c in commands)
    lines = [
        f"usage: {PROG} COMMAND [options]",
        "",
        "Remove sEMG electrodes from face videos with a per-subject CycleGAN and evaluate the",
        'result (Büchner et al., "Let\'s Get the FACS Straight", VISAPP 2023).',
        "",
        "commands:",
        *(f"  {c.name:<{width}}  {c.purpose}" for c in commands),
        "",
        f"`{PROG} COMMAND --help` shows a command's options. Start with `{PROG} demo`.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the command's module (imported only now). Exit codes: the command's;
    2 for an unknown or missing command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(top_level_help())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from sensor_removal import __version__

        print(f"sensor-removal {__version__}")
        return 0
    by_name = {c.name: c for c in available_commands()}
    command = by_name.get(args[0])
    if command is None:
        print(f"{PROG}: error: unknown command {args[0]!r}; choose from {', '.join(by_name)}", file=sys.stderr)
        print(f"`{PROG} --help` lists what each one does.", file=sys.stderr)
        return 2
    from sensor_removal.core.noise import quiet_known_noise

    quiet_known_noise()
    # Explicit arguments (tests, scripts) are passed on; otherwise the command reads its own.
    return command.run(args[1:] if argv is not None else None)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
