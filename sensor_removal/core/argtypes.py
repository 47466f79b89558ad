"""Argument types and option spelling shared by the plain-argparse commands (``synth``, ``clean``,
``python -m evaluation``): a bad value is a one-line usage error, not a traceback."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence


def int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers ``>= minimum`` (and ``<= maximum``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {value}")
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


# ----------------------------------------------------------------- typed signatures
# Range-restricted number types for the LightningCLI signatures (``CycleGAN``,
# ``FramesDataModule``): jsonargparse checks them while parsing, so ``--data.fraction 1.5``
# is a usage error naming the option before anything is built or written. They are
# subclasses of int/float; constructors convert them back with int()/float() so that
# checkpoints hold plain numbers (loadable with ``weights_only=True``).

import math  # noqa: E402

from jsonargparse.typing import (  # noqa: E402 - grouped with the types built from them
    NonNegativeInt,
    PositiveInt,
    restricted_number_type,
)

#: A float > 0 and finite: ``--model.lr inf`` (or ``nan``) would train nothing, silently.
#: (jsonargparse's own PositiveFloat lets ``inf`` through.)
PositiveFloat = restricted_number_type("FinitePositiveFloat", float, [(">", 0), ("<", math.inf)])
#: A float >= 0 and finite (loss weights).
NonNegativeFloat = restricted_number_type("FiniteNonNegativeFloat", float, [(">=", 0), ("<", math.inf)])

#: A share in (0, 1]: the fraction of frames drawn per domain.
UnitShare = restricted_number_type("UnitShare", float, [(">", 0), ("<=", 1)])
#: A share in [0, 1): held out for validation, Adam's betas.
HalfOpenShare = restricted_number_type("HalfOpenShare", float, [(">=", 0), ("<", 1)])

__all__ = [
    "HalfOpenShare",
    "NonNegativeFloat",
    "NonNegativeInt",
    "PositiveFloat",
    "PositiveInt",
    "UnitShare",
    "int_at_least",
]
