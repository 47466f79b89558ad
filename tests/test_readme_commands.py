"""Every command the README documents is executed by some test of the default run.

The README is what a new user copies from. ``COVERAGE`` maps each documented command
(``make X``, ``python -m PACKAGE SUBCOMMAND``) to the tests that run it; the first test
fails when the README gains a command nobody runs, the second when a mapping points at a
test that no longer exists. Commands no default test can run say why instead.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

#: README command -> the tests that execute it (``file::function``), or a reason string
#: (starting with "not run:") for a command no default test can run. ``make bench`` is
#: guarded by a ``slow`` test (its quick mode still takes minutes): ``make test-all``.
COVERAGE: dict[str, list[str] | str] = {
    "make demo": [
        "tests/test_demo.py::test_demo_exits_zero_with_psnr_summary",
        "tests/test_demo.py::test_demo_leaves_checkpoint_grid_videos_and_report",
    ],
    "make test": "not run: it is the default test run itself "
    "(.ci/run calls it; see test_ci_runs_the_readme_test_command)",
    "make test-all": ["tests/test_readme_commands.py::test_make_test_all_selects_the_slow_tests"],
    "make bench": ["tests/test_readme_commands.py::test_make_bench_quick_runs_every_benchmark"],
    "make lint": ["tests/test_readme_commands.py::test_make_lint_is_clean"],
    "python -m sensor_removal": [
        "tests/test_commands.py::test_top_level_help_lists_every_command_with_its_purpose",
        "tests/test_commands.py::test_help_imports_nothing_heavy",
    ],
    "python -m sensor_removal fit": [
        "tests/test_cli.py::test_fit_writes_run_and_resumes_from_last",
        "tests/test_readme_commands.py::test_subject_config_parses_with_other_manifest",
    ],
    "python -m sensor_removal clean": [
        "tests/test_clean.py::test_main_cleans_good_reports_bad",
        "tests/test_clean.py::test_main_single_video",
    ],
    "python -m sensor_removal demo": ["tests/test_demo.py::test_demo_exits_zero_with_psnr_summary"],
    "python -m sensor_removal synth": ["tests/test_synthetic.py::test_cli_builds_and_says_where"],
    "python -m sensor_removal sweep": [
        "tests/test_sweep.py::test_slurm_sweep_two_subjects_two_grid_points",
        "tests/test_sweep.py::test_dry_run_multi_gpu_spec_prints_array_and_sbatch_parameters",
        "tests/test_sweep.py::test_example_sweep_file_dry_runs",
        "tests/test_sweep.py::test_resubmit_failed_runs_only_the_failed_tasks",
    ],
    "python -m sensor_removal emg": ["tests/test_emg_cli.py::test_emg_report_fit_predict"],
    "python -m sensor_removal bbox": ["tests/test_bbox.py::test_box_contains_the_face_in_every_frame"],
    "python -m evaluation run": ["tests/test_protocol.py::test_run_groundtruth_and_lpips_via_cli"],
    "python -m evaluation report": [
        "tests/test_protocol.py::test_run_groundtruth_and_lpips_via_cli",
        "tests/test_grid_report.py::test_grid_points_are_reported_and_compared",
    ],
    "python -m evaluation weights": ["tests/test_readme_commands.py::test_evaluation_weights_lists_files"],
    "python -m evaluation fetch-weights": [
        "tests/test_facial.py::test_fetch_downloads_into_weights_folder_and_checks_hashes",
        "tests/test_perceptual.py::test_stand_in_weights_are_found_but_refused_by_fetch",
    ],
    "make app": ["tests/test_app.py::test_make_app_runs_the_app_command"],
    "python -m lightning_app": [
        "tests/test_app.py::test_runs_table_lists_run_and_loss_plot_renders",
        "tests/test_app_parts.py::test_cli_rejects_bad_folders_with_exit_2",
    ],
}


def readme_commands(text: str) -> set[str]:
    """``make X`` and ``python -m PKG SUB`` as written in the README's code and inline code."""
    found: set[str] = set()
    for m in re.finditer(r"(?<![\w/.-])make ([a-z][\w-]*)", text):
        found.add(f"make {m.group(1)}")
    for m in re.finditer(r"python -m (\w+)(?:[ \t]+([a-z][\w-]*))?", text):
        pkg, sub = m.group(1), m.group(2)
        if pkg in ("pytest", "pip", "venv"):
            continue
        found.add(f"python -m {pkg} {sub}" if sub else f"python -m {pkg}")
    return found


def _test_exists(ref: str) -> bool:
    path, _, name = ref.partition("::")
    tree = ast.parse((ROOT / path).read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body)


def test_every_readme_command_is_covered() -> None:
    missing = sorted(readme_commands(README.read_text()) - set(COVERAGE))
    assert not missing, f"README commands without a test in COVERAGE: {missing}"


def test_coverage_points_at_existing_tests() -> None:
    for command, refs in COVERAGE.items():
        if isinstance(refs, str):
            assert refs.startswith("not run:"), command
            continue
        gone = [r for r in refs if not _test_exists(r)]
        assert not gone, f"{command}: {gone} do not exist"


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in readme_commands(README.read_text())
    lines = [
        ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert lines[-1] == "make test"
    assert "make lint" in lines  # ruff runs in CI too


def test_make_test_reruns_the_numerics_tests_with_other_kernels_and_one_thread() -> None:
    """A float comparison that holds only for this CPU's kernels fails in CI (AVX2 kernels,
    one thread), not on a user's machine."""
    make = (ROOT / "Makefile").read_text()
    recipe = make.split("\ntest: setup\n", 1)[1].split("\n\n", 1)[0]
    assert "test-numerics" in recipe
    numerics = make.split("\ntest-numerics: setup\n", 1)[1].split("\n\n", 1)[0]
    assert "ATEN_CPU_CAPABILITY=default" in numerics and "ONEDNN_MAX_CPU_ISA=AVX2" in numerics
    assert "OMP_NUM_THREADS=1" in numerics
    assert numerics.count("$(NUMERICS)") == 2 and '-m "numerics and not slow"' in make


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_make_lint_is_clean() -> None:
    """ruff's lint and format checks (mypy and the import contracts: ``make lint`` in CI;
    the contracts also tests/test_layout.py)."""
    for args in (["check", "."], ["format", "--check", "."]):
        proc = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:]


def test_make_test_all_selects_the_slow_tests() -> None:
    """``make test-all`` selects more than the default run: the ``slow`` tests too. One
    collection answers both: the default run's ``N/M tests collected (K deselected)`` says
    how many it selects (N) out of all tests (M), which ``-m "slow or not slow"`` selects."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    counts = re.search(r"(\d+)/(\d+) tests collected \((\d+) deselected\)", proc.stdout)
    assert counts, proc.stdout[-3000:]
    selected, total, deselected = (int(g) for g in counts.groups())
    assert deselected > 0 and selected + deselected == total

    make = (ROOT / "Makefile").read_text()
    assert re.search(r'^test-all:.*\n\t.*pytest -m "slow or not slow"', make, flags=re.MULTILINE)


def test_subject_config_parses_with_other_manifest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The README's second ``fit`` line: the example subject's config with another
    manifest, subject and run folder."""
    from sensor_removal.cli.commands import main

    with pytest.raises(SystemExit) as done:
        main(
            [
                "fit",
                "--config",
                str(ROOT / "conf" / "subjects" / "subj07.yaml"),
                "--data.manifest",
                str(tmp_path / "subj08" / "manifest.yaml"),
                "--subject",
                "subj08",
                "--trainer.default_root_dir",
                str(tmp_path / "runs" / "subj08"),
                "--print_config",
            ]
        )
    assert done.value.code == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["subject"] == "subj08"
    assert cfg["data"]["manifest"] == str(tmp_path / "subj08" / "manifest.yaml")
    assert cfg["trainer"]["default_root_dir"] == str(tmp_path / "runs" / "subj08")
    assert cfg["trainer"]["max_epochs"] == 30 and cfg["model"]["lr"] == 3e-4  # the paper's defaults
    assert cfg["weights_only"] is True


def test_evaluation_weights_lists_files(torch_home: Path, capsys: pytest.CaptureFixture) -> None:
    from evaluation.cli import main

    assert main(["weights", "--metrics", "lpips,fid"]) == 0
    out = capsys.readouterr().out
    assert f"MISSING  lpips   {torch_home}" in out and "alexnet-owt-7be5be79.pth" in out
    assert "weights-inception-2015-12-05-6726825d.pth" in out
    # landmarks: dlib's models ship inside an installed package, so always available.
    assert re.search(r"^available metrics: landmarks,groundtruth$", out, flags=re.MULTILINE)


@pytest.mark.slow  # minutes even in --quick mode: `make test-all` runs it
def test_make_bench_quick_runs_every_benchmark() -> None:
    """``make bench`` runs ``bench/run_all.py``; its ``--quick`` mode runs every benchmark
    on tiny inputs and prints each one's ratio."""
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^bench:.*\n\t.*bench/run_all\.py", make, flags=re.MULTILINE)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "failed:" not in proc.stdout
    benches = re.findall(r"^=== (bench_\w+\.py)", proc.stdout, flags=re.MULTILINE)
    assert len(benches) >= 4
    assert len(re.findall(r"\d+\.\d+\s*[x×]|ratio", proc.stdout)) >= len(benches), proc.stdout[-3000:]
    assert "written: " + str(ROOT / "bench" / "results-quick.json") in proc.stdout  # a full run's numbers stay
