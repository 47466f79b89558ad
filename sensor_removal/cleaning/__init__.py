"""Clean whole videos with a trained generator G_S→N (docs/design.md "The job", step *clean*).

The paper (Büchner et al., VISAPP 2023, Sec. 3.2 and 4) runs the sensor→normal generator
over **every** frame of every sensor video and hands the result to unmodified facial
analysis. This module is the one implementation of that step; the CLI
(``python -m sensor_removal clean``), the post-fit hook and the app all call it:

* :func:`load_generator` — G_S→N and its :class:`CleanSettings` from a checkpoint;
  :func:`checkpoint_reference` — the normal colour reference the fit stored with it;
* :func:`clean_video` — one video, one bbox → the cleaned face crop at the model's
  resolution (and, with ``paste_back``, the full frame with the cleaned crop put back);
* :func:`clean_recordings` / :func:`clean_subject` — every (or the named) sensor recording
  of a subject, one failure not stopping the others, plus a ``manifest.yaml`` of the
  cleaned recordings (``condition: clean``, ``source:`` the sensor recording) for the
  evaluation;
* :func:`paste_back` — the cleaned crop resized into the bbox with a feathered edge.

Why the pipeline looks the way it does:

* Every frame is cut with :func:`sensor_removal.core.video.crop_resize` at the training crop
  size and converted with :func:`sensor_removal.core.tensors.to_tensor`, so the generator sees at
  inference exactly the pixels it was trained on; outputs go through
  :func:`sensor_removal.core.tensors.to_uint8`.
* Streaming with bounded queues: a reader thread (decode, crop, stack uint8 batches), the
  caller's thread (inference) and a writer thread (paste-back, encode) overlap, so the
  generator never waits for IO and memory does not grow with the video's length. On CUDA
  the output is copied to pinned memory asynchronously and ``to_uint8`` runs in the
  writer; on CPU it runs right after the generator, in the same OpenMP team.
  A failure in any stage stops the others (stop event, polling with timeouts) and is
  re-raised in the caller's thread.
* On CUDA: bf16 autocast and channels_last (the generator is conv-only, so both are safe
  and ~2x faster); on CPU: fp32. Instance norm uses per-image statistics, so a frame's
  output does not depend on the batch it is in.
* Outputs are written under a temporary name and renamed when complete; a failed
  recording leaves nothing behind.
* Compositing (``composite="auto"``, **our extension, not the paper's**): the cleaned crop
  is ``M·G(S) + (1 − M)·S`` with a sensor mask ``M`` estimated per frame from what the
  generator changed (:mod:`sensor_removal.cleaning.mask`), so every pixel the sensors did not
  touch reaches facial analysis as recorded. ``composite="off"`` writes the paper's full
  repaint. The mask needs frames in order (temporal hysteresis), so it runs in the
  writer thread; optional side outputs: ``NAME.mask.mp4`` (the mask, for inspection) and
  ``NAME.repaint.mp4`` (the full repaint, for the ground-truth comparison). With the
  sub-pixel composite also ``NAME.detail.mp4`` (ours, default on): the composite at the
  mask's finer size, the recording's own pixels away from the sensors; the paste-back
  uses it.

The package: :mod:`.settings` (option types, :class:`CleanSettings`, devices, errors),
:mod:`.options` (:class:`CleanOptions`: how to clean, passed down from the command line),
:mod:`.generator` (loading G_S→N, one forward pass), :mod:`.compositing` (paste-back),
:mod:`.pipeline` (one video: reader → model → writer), :mod:`.cleaned_manifest` (the
manifest of cleaned recordings) and :mod:`.subjects` (a subject's recordings); the command
line is :mod:`sensor_removal.cli.clean`.
"""

from sensor_removal.cleaning.cleaned_manifest import (
    clean_recording_entry,
    write_detail_manifest,
    write_repaint_manifest,
)
from sensor_removal.cleaning.generator import GeneratorRunner, checkpoint_reference, load_generator
from sensor_removal.cleaning.options import CleanOptions
from sensor_removal.cleaning.paste_back import feather_alpha, full_output_path, paste_back
from sensor_removal.cleaning.pipeline import CleanResult, check_video_outputs, clean_video
from sensor_removal.cleaning.settings import (
    CLEAN_MANIFEST,
    CLEAN_MANIFEST_LOCK,
    DEFAULT_COMPOSITE,
    DEFAULT_FEATHER,
    DETAIL_MANIFEST,
    REPAINT_MANIFEST,
    CleanError,
    CleanSettings,
    Composite,
    DeviceArg,
    Precision,
    default_batch_size,
)
from sensor_removal.cleaning.subjects import CleanFailure, CleanReport, clean_recordings, clean_subject
from sensor_removal.core.device import resolve_device

__all__ = [
    "CLEAN_MANIFEST",
    "CLEAN_MANIFEST_LOCK",
    "REPAINT_MANIFEST",
    "DETAIL_MANIFEST",
    "DEFAULT_COMPOSITE",
    "DEFAULT_FEATHER",
    "Composite",
    "DeviceArg",
    "Precision",
    "CleanError",
    "CleanFailure",
    "CleanOptions",
    "CleanReport",
    "CleanResult",
    "CleanSettings",
    "GeneratorRunner",
    "clean_recording_entry",
    "write_repaint_manifest",
    "write_detail_manifest",
    "clean_recordings",
    "clean_subject",
    "check_video_outputs",
    "clean_video",
    "default_batch_size",
    "feather_alpha",
    "full_output_path",
    "checkpoint_reference",
    "load_generator",
    "paste_back",
    "resolve_device",
]
