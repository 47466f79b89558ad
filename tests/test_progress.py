"""Progress that can be followed in a log file: plain lines at a fixed interval."""

from __future__ import annotations

import io
from types import SimpleNamespace

from sensor_removal.core.progress import TextProgress, format_duration
from sensor_removal.training.progress_bars import TerminalProgressBar, TextProgressBar, progress_bar_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_text_progress_prints_every_n_seconds_with_rate_and_eta() -> None:
    clock, out = Clock(), io.StringIO()
    p = TextProgress(100, "clean s1", "frames", every_s=10, stream=out, clock=clock)
    for _ in range(50):  # 50 frames in 20 s: 2.5 frames/s
        clock.now += 0.4
        p.update(1, "loss 0.5")
    lines = out.getvalue().splitlines()
    # The first update prints, then one line per 10 s.
    assert len(lines) == 2, lines
    assert lines[0].startswith("clean s1: 1/100 frames (1%), 2.50 frames/s, elapsed 0:00:00, ETA 0:00:40 | loss 0.5")
    p.close()
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("clean s1: 50/100 frames (50%), 2.50 frames/s, elapsed 0:00:20, ETA 0:00:20")


def test_resumed_counts_do_not_inflate_the_rate() -> None:
    clock, out = Clock(), io.StringIO()
    p = TextProgress(200, "fit", "steps", every_s=0, stream=out, clock=clock)
    p.initial = p.done = 100  # a resumed fit: 100 steps were done before this process
    clock.now += 10
    p.update(10)
    assert "110/200 steps (55%), 1.00 steps/s" in out.getvalue() and "ETA 0:01:30" in out.getvalue()


def test_durations_and_unknown_totals() -> None:
    assert format_duration(3725) == "1:02:05" and format_duration(float("nan")) == "?"
    out = io.StringIO()
    TextProgress(None, "decode", "frames", stream=out).update(3)
    assert "decode: 3 frames," in out.getvalue() and "ETA ?" in out.getvalue()


def test_the_bar_suits_the_stream() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(progress_bar_for(Terminal()), TerminalProgressBar)
    bar = progress_bar_for(io.StringIO(), every_s=7)
    assert isinstance(bar, TextProgressBar) and bar.every_s == 7


def test_terminal_bar_stops_before_the_post_fit_hook_prints() -> None:
    """The Rich display is stopped when training ends (before ``on_fit_end`` hooks such as
    the post-fit benchmark print), not only at teardown."""
    bar = TerminalProgressBar()
    stopped = []
    bar.progress = SimpleNamespace(stop=lambda: stopped.append(True))
    bar.on_train_end(SimpleNamespace(), SimpleNamespace())
    assert stopped == [True] and bar._progress_stopped
