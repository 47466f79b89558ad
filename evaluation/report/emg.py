"""Our extension in the report: the expression <-> muscle mapping table, read from the
``emg/`` folder that ``python -m sensor_removal emg report --out RESULTS/emg`` writes
next to a result folder's ``results.csv``.

Why files and not a call: the evaluation does not depend on the sEMG code; the report
only shows what that command measured (its Markdown table and two figures).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

#: The folder inside a result folder, and what the report takes from it.
EMG_DIR = "emg"
EMG_TABLE = "emg.md"
EMG_FIGURES: tuple[str, ...] = ("fig_emg_envelopes.png", "fig_emg_r_per_muscle.png")


def emg_sections(dirs: Sequence[Path], out: Path) -> tuple[list[str], dict[str, Path]]:
    """Markdown lines (one section per result folder with an ``emg/emg.md``) and the
    figures copied into ``out`` (named after the subject folder when several)."""
    found = [d for d in dirs if (d / EMG_DIR / EMG_TABLE).is_file()]
    lines: list[str] = []
    written: dict[str, Path] = {}
    for d in found:
        src = d / EMG_DIR
        text = (src / EMG_TABLE).read_text(encoding="utf-8").strip().splitlines()
        title = (
            text[0].lstrip("# ").strip() if text and text[0].startswith("#") else "Expression <-> muscle mapping (ours)"
        )
        suffix = f" — {d.name}" if len(found) > 1 else ""
        lines += [f"## {title}{suffix}", "", *text[1:], ""]
        for fig in EMG_FIGURES:
            if (src / fig).is_file():
                name = f"{d.name}_{fig}" if len(found) > 1 else fig
                shutil.copyfile(src / fig, out / name)
                written[Path(name).stem] = out / name
                lines += [f"![{Path(name).stem}]({name})", ""]
    return lines, written
