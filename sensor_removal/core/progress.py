"""Progress a user can follow, in a terminal and in a cluster job's log file.

On a SLURM node stdout goes to a file: a redrawn bar there is either silent until the
end or a mess of carriage returns. So when the stream is not a terminal the project
prints plain lines every ``every_s`` seconds instead (what, done/total, rate, ETA and
the latest losses); in a terminal it uses the Rich bar.

* :class:`TextProgress` — plain lines for any counted job (cleaning frames, a fit's
  steps); :func:`is_terminal` decides between it and a bar;
* :mod:`sensor_removal.training.progress_bars` — the Lightning progress bars built on it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import IO

#: Default seconds between two plain progress lines.
EVERY_S = 30.0


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class TextProgress:
    """``desc: done/total unit (pct), rate unit/s, ETA H:MM:SS`` lines, one at the start,
    then at most one every ``every_s`` seconds, and one when closed."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        every_s: float = EVERY_S,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock
        self.done = 0
        self.initial = 0  # already done when counting began (a resumed fit): not in the rate
        self.start = self.clock()
        self._last = -math.inf

    def line(self, extra: str = "") -> str:
        elapsed = self.clock() - self.start
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else math.nan
        if self.total:
            head = f"{self.done}/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%)"
            eta = (self.total - self.done) / rate if rate > 0 else math.nan
        else:
            head, eta = f"{self.done} {self.unit}", math.nan
        rate_s = f"{rate:.2f} {self.unit}/s" if math.isfinite(rate) else f"? {self.unit}/s"
        text = f"{self.desc}: {head}, {rate_s}, elapsed {format_duration(elapsed)}, ETA {format_duration(eta)}"
        return f"{text} | {extra}" if extra else text

    def update(self, n: int = 1, extra: str = "") -> None:
        self.done += n
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last = now
            print(self.line(extra), file=self.stream, flush=True)

    def close(self, extra: str = "") -> None:
        print(self.line(extra), file=self.stream, flush=True)


def counter(total: int | None, desc: str, unit: str = "it", enabled: bool = True, every_s: float = EVERY_S):
    """A progress counter with ``update(n)`` and ``close()``: a tqdm bar when stderr is a
    terminal, :class:`TextProgress` lines on stdout otherwise, nothing when not ``enabled``."""
    if enabled and not is_terminal(sys.stderr):
        return TextProgress(total, desc, unit, every_s)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True)
