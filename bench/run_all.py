"""`make bench`: every benchmark, each measuring ours against a plain baseline side by
side in one run. Pass --quick for a short smoke run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["bench_frames.py", "bench_train.py", "bench_clean.py", "bench_timeseries.py", "bench_decode.py", "bench_landmarks.py",
           "bench_sweep.py"]


def main() -> int:
    extra = sys.argv[1:]
    failed = []
    for name in BENCHES:
        print(f"\n=== {name} {' '.join(extra)}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / name), *extra])
        if code:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
