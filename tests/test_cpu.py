"""What the CPU offers (sensor_removal.core.cpu): bf16 on a CPU that would emulate it warns
once, with the capability found; benchmarks get the CPU facts they print."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

import sensor_removal.core.cpu as cpu
from tests.test_precision import fit, tiny


def test_bf16_on_a_cpu_without_native_bf16_warns_with_the_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "bf16_native", lambda: False)
    monkeypatch.setattr(cpu, "cpu_capability", lambda: "AVX2")
    with pytest.warns(cpu.Bf16EmulatedWarning, match="capability AVX2"):
        assert cpu.warn_if_bf16_emulated("bf16-mixed", "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these may warn
        assert not cpu.warn_if_bf16_emulated("32-true", "cpu")
        assert not cpu.warn_if_bf16_emulated("bf16-mixed", "cuda")
        monkeypatch.setattr(cpu, "bf16_native", lambda: True)
        assert not cpu.warn_if_bf16_emulated("bf16-mixed", "cpu")


def test_cpu_facts_name_capability_cores_and_torch() -> None:
    facts = cpu.cpu_facts()
    assert facts["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert facts["cpus"] >= 1 and facts["torch"] == torch.__version__
    assert isinstance(facts["bf16_native"], bool)
    line = cpu.cpu_line()
    assert facts["cpu_capability"] in line and "cores" in line and "bf16" in line


def test_a_bf16_fit_on_an_emulating_cpu_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, single_thread
) -> None:
    monkeypatch.setattr(cpu, "bf16_native", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tiny(), tmp_path, precision="bf16-mixed", batches=2)
    ours = [w for w in caught if issubclass(w.category, cpu.Bf16EmulatedWarning)]
    assert len(ours) == 1 and cpu.cpu_capability() in str(ours[0].message)
