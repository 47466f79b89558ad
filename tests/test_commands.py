"""The top-level command line: one help listing every command, fast help screens, one
option spelling, where the weights live."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensor_removal.cli import commands
from sensor_removal.cli.commands import COMMANDS, Command, main, top_level_help

ROOT = Path(__file__).resolve().parent.parent
#: Modules a help screen must not load: each costs seconds (torch alone 1.5-4 s here).
HEAVY = ("torch", "pytorch_lightning", "lightning_fabric", "wandb", "torchvision", "pandas", "feat")


def test_top_level_help_lists_every_command_with_its_purpose(capsys: pytest.CaptureFixture) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("demo", "synth", "fit", "validate", "predict", "clean", "evaluate"):
        line = next((x for x in out.splitlines() if x.strip().startswith(name + " ")), None)
        assert line is not None, f"{name} missing from the help:\n{out}"
        assert len(line.split(name, 1)[1].strip()) > 20  # a purpose, not just the name
    assert "test " not in out  # the model has no test step: not offered
    assert "Lightning Trainer command line tool" not in out and "__main__.py" not in out
    # No command: the same help, and a usage error.
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().out


def test_commands_whose_module_is_absent_are_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    ghost = Command("ghost", "a command whose module is not installed", "sensor_removal.no_such_module:main")
    monkeypatch.setattr(commands, "COMMANDS", (*COMMANDS, ghost))
    assert not ghost.available()
    assert "ghost" not in top_level_help()
    assert main(["ghost"]) == 2
    # The planned commands appear exactly when their modules exist.
    for name, module in (("bbox", "sensor_removal.cli.bbox"), ("sweep", "sensor_removal.cluster.submit")):
        exists = (ROOT / Path(*module.split("."))).with_suffix(".py").is_file()
        assert (f"\n  {name} " in top_level_help()) == exists


def test_test_and_unknown_commands_are_usage_errors(capsys: pytest.CaptureFixture) -> None:
    assert main(["test"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'test'" in err and "Traceback" not in err


def _imported_by(args: list[str]) -> tuple[set[str], float, str]:
    """Modules imported by ``python -X importtime -m sensor_removal ARGS``, their
    cumulative import time in seconds, and stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sensor_removal", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules, total_us = set(), 0
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = (x.strip() for x in line.split(":", 1)[1].split("|"))
            modules.add(name.strip())
            if not name.startswith(" "):
                total_us += int(cumulative)
    return modules, total_us / 1e6, proc.stdout


@pytest.mark.parametrize(
    "args",
    [["--help"], ["synth", "--help"], ["clean", "--help"], ["demo", "--help"], ["evaluate", "--help"]],
    ids=lambda a: " ".join(a),
)
def test_help_imports_nothing_heavy(args: list[str]) -> None:
    modules, seconds, out = _imported_by(args)
    assert "usage:" in out
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, f"`{' '.join(args)}` imported {heavy[:5]}"
    print(f"{' '.join(args)}: imports took {seconds:.2f} s")  # about 0.1-0.3 s on an idle 2-core box


def test_plain_commands_accept_the_lightning_spelling() -> None:
    from sensor_removal.cli.clean import build_parser
    from sensor_removal.core.argtypes import unify_option_names

    parser = build_parser()
    argv = ["--ckpt_path", "a.ckpt", "--manifest", "m.yaml", "--out", "o", "--batch_size=4", "--paste_back"]
    args = parser.parse_args(unify_option_names(parser, argv))
    assert (args.ckpt, args.batch_size, args.paste_back) == (Path("a.ckpt"), 4, True)
    # Unknown names are left alone, so argparse still reports them.
    assert unify_option_names(parser, ["--not_an_option"]) == ["--not_an_option"]


def test_weights_command_says_where_each_library_looks(
    torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from evaluation.metrics import facial

    monkeypatch.delenv(facial.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["evaluate", "weights", "--metrics", "lpips,facial"]) == 0
    out = capsys.readouterr().out
    assert f"torch hub folder (LPIPS, FID): {torch_home}" in out
    assert f"py-feat folder (facial): {tmp_path / 'cache' / 'sensor-removal' / 'feat'}" in out
    assert "SENSOR_REMOVAL_FEAT_CACHE moves it" in out


def test_metric_lists_take_the_config_spelling_too() -> None:
    from evaluation.cli import build_parser

    run = ["run", "--manifest", "m.yaml", "--out", "o"]
    for spelling in ("lpips,fid", "[lpips, fid]"):
        assert build_parser().parse_args([*run, "--metrics", spelling]).metrics == ("lpips", "fid")
