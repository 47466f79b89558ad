"""Argument types and option spelling shared by the plain-argparse commands (``synth``, ``clean``,
``python -m evaluation``): a bad value is a one-line usage error, not a traceback."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def unify_option_names(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Accept ``--batch_size`` for ``--batch-size``: the Lightning commands spell options
    with underscores (``--ckpt_path``, ``--trainer.max_epochs``), the plain commands with
    dashes; either spelling works everywhere (README, "Options")."""
    known = {s for action in parser._actions for s in action.option_strings}
    out = []
    for token in argv:
        name, eq, value = token.partition("=")
        if name.startswith("--") and "_" in name and name not in known and name.replace("_", "-") in known:
            token = name.replace("_", "-") + eq + value
        out.append(token)
    return out
