"""Starting weights from another fit's checkpoint (``--model.init_from``; ours).

The labs' cost is the paper's full schedule for every subject (36 × 30 epochs). A
population model (``fit`` on a list of manifests, :mod:`~sensor_removal.training.pool`)
has already learnt what electrodes look like on faces; a subject's fit that starts from
it needs fewer steps (bench/bench_warmstart.py measures how many). Only the weights of
the four networks are taken, never optimiser states or the schedule: the fine-tune is a
new fit with its own learning-rate curve.

The file is read with ``weights_only=True`` (:func:`~sensor_removal.core.checkpoint.read_checkpoint`).
Weights of another architecture would fail deep inside ``load_state_dict`` with a list of
tensor shapes; the saved hyper-parameters are compared first, so the message names the
file and the field that differs.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from sensor_removal.core.checkpoint import CheckpointError, read_checkpoint

#: The networks taken from the checkpoint (``state_dict`` prefixes, the module's attributes).
NETWORKS = ("gen_s2n", "gen_n2s", "disc_s", "disc_n")
#: Model hyper-parameters that fix the networks' shapes, and the defaults of checkpoints
#: written before an option existed.
ARCHITECTURE = {"ngf": None, "ndf": None, "n_blocks": None, "n_layers_d": None, "generator": "resnet"}


def init_state(path: str, hparams: dict[str, Any], crop_size: int | None) -> dict[str, dict[str, Tensor]]:
    """Per network of :data:`NETWORKS`, its weights in the checkpoint at ``path``, after
    checking the checkpoint's architecture against this fit's ``hparams`` (and, when
    known, the data's ``crop_size``: the networks would load at another crop, but they
    learnt at the checkpoint's scale of face). Raises :class:`CheckpointError` naming
    ``path`` and the field."""
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as exc:
        raise CheckpointError(f"--model.init_from: {exc}") from None
    saved = ckpt.get("hyper_parameters")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: --model.init_from: the checkpoint has no hyper_parameters")
    for key, default in ARCHITECTURE.items():
        theirs = saved.get(key, default)
        ours = hparams.get(key, default)
        if theirs is None:
            raise CheckpointError(f"{path}: --model.init_from: the checkpoint has no hyper_parameters.{key}")
        if theirs != ours:
            raise CheckpointError(
                f"{path}: --model.init_from: hyper_parameters.{key} is {theirs!r} in the checkpoint but "
                f"{ours!r} in this fit (--model.{key}); the networks must have the same architecture"
            )
    data = ckpt.get("datamodule_hyper_parameters")
    theirs_crop = data.get("crop_size") if isinstance(data, dict) else None
    if crop_size is not None and theirs_crop is not None and int(theirs_crop) != int(crop_size):
        raise CheckpointError(
            f"{path}: --model.init_from: datamodule_hyper_parameters.crop_size is {theirs_crop} in the "
            f"checkpoint but {crop_size} in this fit (--data.crop_size)"
        )
    state = ckpt["state_dict"]
    out: dict[str, dict[str, Tensor]] = {}
    for net in NETWORKS:
        prefix = f"{net}."
        part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not part:
            raise CheckpointError(f"{path}: --model.init_from: the checkpoint has no {net}.* weights")
        out[net] = part
    return out
