"""The per-subject mapping between expression features and sEMG envelopes, both ways.

EIFER (Büchner et al., CVPR 2025) learns Exp2EMG (expression -> 22 envelopes) and EMG2Exp
(envelopes -> expression) per subject with small MLPs. Here the input is a *window* of
frames around each frame (``window_before`` .. ``window_after``): the muscle fires
100-300 ms before the movement shows and the RMS envelope spreads over ~0.5 s, so one
frame alone cannot carry the relation. Inputs are standardised and reduced to
``components`` principal components (fitted on the training takes only), windowed, then
fed to a ridge regression (the lagged linear baseline, closed form) or a small MLP
(:mod:`sensor_removal.emg.mlp`, Lightning). Outputs are standardised per channel.

Validation is on held-out *contiguous takes* (:func:`cross_validate`: leave one
recording out): neighbouring frames are nearly identical, so a random frame split would
leak and flatter the mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

Direction = Literal["exp2emg", "emg2exp"]
Model = Literal["ridge", "mlp"]


@dataclass(frozen=True)
class MappingSettings:
    """The mapping's settings (docs/emg.md). Defaults: the best held-out Exp2EMG R² of a small
    grid on the synthetic subject's ground-truth video (60 s takes, smoothed landmarks;
    components 4-128, windows 0-12 frames each side, alpha 1-3000: more components carry
    the small lip movements, the larger penalty keeps the wider design in check). ``alpha``:
    ridge penalty on standardised inputs; ``hidden``/``epochs``/``lr``: the MLP's; ``seed`` its
    initialisation."""

    model: Model = "ridge"
    window_before: int = 8
    window_after: int = 8
    components: int = 96
    alpha: float = 1000.0
    hidden: int = 64
    epochs: int = 200
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0


DEFAULT_MAPPING = MappingSettings()


@dataclass
class Mapping:
    """A fitted mapping: everything :func:`predict` needs (arrays only, plus the MLP's
    state dict), with the input and output names."""

    settings: MappingSettings
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    in_mean: np.ndarray
    in_std: np.ndarray
    basis: np.ndarray  # (F, K) principal directions of the standardised inputs
    out_mean: np.ndarray
    out_std: np.ndarray
    weights: dict[str, Any] = field(default_factory=dict)


def windowed(x: np.ndarray, before: int, after: int) -> np.ndarray:
    """``(T, F)`` -> ``(T, (before + after + 1) * F)``: frames ``t - before .. t + after``
    side by side, edges repeated (no leakage across recordings: one call per take)."""
    x = np.asarray(x, dtype=np.float64)
    padded = np.concatenate([np.repeat(x[:1], before, 0), x, np.repeat(x[-1:], after, 0)])
    n = len(x)
    return np.concatenate([padded[k : k + n] for k in range(before + after + 1)], axis=1)


def _design(mapping: Mapping, x: np.ndarray) -> np.ndarray:
    z = ((np.asarray(x, dtype=np.float64) - mapping.in_mean) / mapping.in_std) @ mapping.basis
    return windowed(z, mapping.settings.window_before, mapping.settings.window_after)


def fit_mapping(
    inputs: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    settings: MappingSettings = DEFAULT_MAPPING,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    logger: Any = None,
) -> Mapping:
    """Fit one mapping on takes ``inputs[i]`` ``(T_i, F)`` -> ``outputs[i]`` ``(T_i, C)``.

    ``logger``: a Lightning logger for the MLP's training curve (e.g. W&B)."""
    if not inputs or len(inputs) != len(outputs):
        raise ValueError("fit_mapping needs one output array per input array (one per take)")
    for x, y in zip(inputs, outputs, strict=True):
        if len(x) != len(y):
            raise ValueError(f"a take has {len(x)} input frames but {len(y)} output frames")
    allx, ally = np.concatenate(inputs), np.concatenate(outputs)
    in_mean, in_std = allx.mean(0), allx.std(0)
    in_std = np.where(in_std > 1e-9, in_std, 1.0)
    _, _, vt = np.linalg.svd((allx - in_mean) / in_std, full_matrices=False)
    k = min(settings.components, vt.shape[0])
    out_mean, out_std = ally.mean(0), ally.std(0)
    out_std = np.where(out_std > 1e-9, out_std, 1.0)
    mapping = Mapping(
        settings,
        tuple(input_names or (f"in{i}" for i in range(allx.shape[1]))),
        tuple(output_names or (f"out{i}" for i in range(ally.shape[1]))),
        in_mean,
        in_std,
        vt[:k].T,
        out_mean,
        out_std,
    )
    design = np.concatenate([_design(mapping, x) for x in inputs])
    target = (ally - out_mean) / out_std
    if settings.model == "ridge":
        d = design.shape[1]
        a = design.T @ design + settings.alpha * np.eye(d)
        w = np.linalg.solve(a, design.T @ target)
        mapping.weights = {"w": w}
    else:
        from sensor_removal.emg.mlp import train_mlp

        mapping.weights = {"mlp": train_mlp(design, target, settings, logger)}
    return mapping


def predict(mapping: Mapping, inputs: np.ndarray) -> np.ndarray:
    """Outputs ``(T, C)`` for one take's inputs ``(T, F)``, in the outputs' units."""
    design = _design(mapping, inputs)
    if mapping.settings.model == "ridge":
        z = design @ mapping.weights["w"]
    else:
        from sensor_removal.emg.mlp import run_mlp

        z = run_mlp(mapping.weights["mlp"], design, mapping.settings)
    return z * mapping.out_std + mapping.out_mean


def cross_validate(
    inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray], settings: MappingSettings = DEFAULT_MAPPING
) -> list[np.ndarray]:
    """Leave-one-take-out predictions: element ``i`` is take ``i`` predicted by a mapping
    fitted on all other takes (needs at least 2 takes)."""
    if len(inputs) < 2:
        raise ValueError("validation on held-out takes needs at least 2 recordings with sEMG")
    preds = []
    for i in range(len(inputs)):
        rest = [j for j in range(len(inputs)) if j != i]
        m = fit_mapping(
            [inputs[j] for j in rest], [outputs[j] for j in rest], replace(settings, seed=settings.seed + i)
        )
        preds.append(predict(m, inputs[i]))
    return preds
