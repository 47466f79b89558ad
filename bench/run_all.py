"""`make bench`: every benchmark, each measuring ours against a plain baseline side by
side in one run. Pass --quick for a short smoke run.

At the end it prints one table (what | ours | baseline | ratio) of the fast-path
benchmarks and writes ``bench/results.json``: the machine, each benchmark's printed
output, and the numbers of those that report them (git-ignored: they belong to the
machine they were taken on); a --quick run writes ``bench/results-quick.json`` instead."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# bench_train.py (module vs plain loop, fp32, 128 and 256 px) is covered by the "module fp32"
# rows of bench_fastpaths.py; run it by hand for the CPU-time columns. bench_layout.py
# (channels_last vs NCHW, paper networks, native and AVX2 kernels) is minutes: by hand too.
BENCHES = [
    "bench_frames.py",
    "bench_fastpaths.py",
    "bench_compile.py",
    "bench_clean.py",
    "bench_facial.py",
    "bench_timeseries.py",
    "bench_decode.py",
    "bench_landmarks.py",
    "bench_sweep.py",
    "bench_emg.py",
]
#: Benchmarks that write their numbers with --json.
WITH_JSON = {"bench_fastpaths.py", "bench_compile.py", "bench_facial.py", "bench_emg.py"}


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    sys.path.insert(0, str(HERE.parent))
    from sensor_removal.core.cpu import cpu_facts, cpu_line

    return {
        "cpu": cpu,
        **cpu_facts(),
        "cpu_line": cpu_line(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "load_average_at_start": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> int:
    extra = sys.argv[1:]
    failed = []
    results: dict = {"machine": machine(), "benches": {}}
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in BENCHES:
            print(f"\n=== {name} {' '.join(extra)}", flush=True)
            json_path = Path(tmp) / f"{name}.json"
            cmd = [sys.executable, str(HERE / name), *extra]
            if name in WITH_JSON:
                cmd += ["--json", str(json_path)]
            t = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            lines = []
            assert proc.stdout is not None
            for line in proc.stdout:
                print(line, end="", flush=True)
                lines.append(line)
            code = proc.wait()
            entry: dict = {"exit_code": code, "seconds": round(time.perf_counter() - t, 1), "output": "".join(lines)}
            if json_path.is_file():
                entry["numbers"] = json.loads(json_path.read_text())
                rows += entry["numbers"].get("rows", [])
            results["benches"][name] = entry
            if code:
                failed.append(name)
    m = results["machine"]
    print(
        f"\n=== summary | {m['cpu']}, {m['cpu_line']}, GPU: {m['gpu'] or 'none'} | "
        f"load {m['load_average_at_start']:.1f} at start"
    )
    print("| what | ours | baseline | ratio |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    # A --quick smoke run (the slow test runs one) never replaces a full run's numbers.
    out = HERE / ("results-quick.json" if "--quick" in extra else "results.json")
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(results, indent=2))
    os.replace(tmp_out, out)
    print(f"\nwritten: {out}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
