"""The package layout holds together: every module imports, every class path and dotted
module name the configs, docs and tests spell resolves, and the one-way layers
(docs/design.md, ``[tool.importlinter]`` in pyproject.toml) are kept."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sensor_removal", "evaluation", "lightning_app")
CLASS_PATH = re.compile(r"""class_path["']?\s*[:=,]\s*["']?([A-Za-z_][\w.]*)""")
DOTTED = re.compile(r"(?<![\w./-])((?:sensor_removal|evaluation|lightning_app)(?:\.[A-Za-z_]\w*)+)")


def _resolves(dotted: str) -> bool:
    """``pkg.module`` or ``pkg.module.Attr`` (one or more attributes) names something real."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def _texts() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "conf").rglob("*.yaml"))]
    return files + sorted((ROOT / "tests").glob("*.py"))


def test_every_module_imports() -> None:
    failed = {}
    for root in PACKAGES:
        pkg = importlib.import_module(root)
        for info in pkgutil.walk_packages(pkg.__path__, root + "."):
            if info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                failed[info.name] = repr(exc)
    assert not failed, failed


def test_every_class_path_resolves() -> None:
    seen, broken = 0, []
    for path in _texts():
        for name in CLASS_PATH.findall(path.read_text(encoding="utf-8")):
            if name.split(".")[0] not in PACKAGES:
                continue  # pytorch_lightning.* etc.: the library's own
            seen += 1
            if not _resolves(name):
                broken.append(f"{path.relative_to(ROOT)}: {name}")
    assert seen >= 5, "no class_path of ours found: the pattern no longer matches the configs"
    assert not broken, broken


def test_every_dotted_name_in_the_docs_resolves() -> None:
    """`sensor_removal.core.video`, `evaluation.weights.check_weights` ... in README, docs and
    configs name modules and objects that exist (a moved module leaves no stale name)."""
    broken = []
    for path in _texts()[: -len(sorted((ROOT / "tests").glob("*.py"))) or None]:
        for name in set(DOTTED.findall(path.read_text(encoding="utf-8"))):
            name = name.rstrip(".")
            if name.endswith((".py", ".md", ".yaml", ".csv", ".json")):
                continue
            if not _resolves(name):
                broken.append(f"{path.relative_to(ROOT)}: {name}")
    assert not broken, sorted(broken)


def test_import_contracts_are_kept() -> None:
    """import-linter's contracts of pyproject.toml: the layers, the evaluation's own layers,
    no cycles between sibling modules."""
    pytest.importorskip("importlinter", reason="import-linter is not installed: pip install -e '.[dev]'")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "broken" in proc.stdout and "0 broken" in proc.stdout
