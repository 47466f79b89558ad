"""The built-in synthetic subject: procedural face videos with and without sEMG sensors.

Why it exists: the paper's recordings (Büchner et al., VISAPP 2023, Sec. 3.1) cannot be
shipped, yet every stage of the pipeline (frames, fit, clean, evaluate) needs a subject
to run on, and the cleaning needs a *ground truth* that real data never has. This module
draws one subject from scratch (numpy + OpenCV primitives, no photos):

* a face with skin, hair, brows, eyes with lids, nose and mouth, animated by per-frame
  expression signals (:data:`SIGNALS`) that follow the paper's three tasks in
  consecutive segments (:data:`sensor_removal.core.manifest.TASKS`): Schaede's mimic tasks
  (held isolated movements), read sentences (fast mouth movement) and emotional
  expressions; plus blinks, small head motion and gaze;
* two sessions, each with one ``normal`` and two ``sensor`` recordings, so that the
  evaluation protocol (N1-N2, Nk-Sk, Nk-Ck; docs/evaluation.md) has every
  pair it compares. Recordings of a session share identity, clothing and lighting;
  session 2 is brighter and warmer. Each recording has its own expression timing and
  intensity (seeded jitter), like a real second take;
* sensor recordings carry ~60 white round electrodes in the fixed anatomical layout of
  high-resolution facial sEMG (forehead, brows, around the eyes, cheeks, nose, around the
  mouth, chin), which move with the face, each with a thin red or white cable leading
  off the face (roughly radially, as taped in real recordings) to the image edge, and a
  few white swabs. For every sensor recording the same
  frames *without* sensors (``<name>.gt.mp4``) and the per-frame sensor mask
  (``<name>.mask.npz``, read with :func:`load_mask`) are written, so that a cleaned video
  can be compared with what is really under the sensors.

Outputs (all written atomically; ``manifest.yaml`` last, so its presence means the set is
complete)::

    DIR/manifest.yaml                 subject, 6 recordings (docs/data.md)
    DIR/s{k}_normal.mp4               k = 1, 2
    DIR/s{k}_sensor_{a,b}.mp4         the sensor recordings
    DIR/s{k}_sensor_{a,b}.gt.mp4      the same frames without sensors
    DIR/s{k}_sensor_{a,b}.mask.npz    keys ``packed`` (np.packbits of the (T, H, W) bool
                                      mask along W) and ``shape`` ([T, H, W])
    DIR/<name>.expr.csv               frame, time_s, one column per signal in SIGNALS
    DIR/s{k}_sensor_{a,b}.emg.npz     synchronised sEMG, 22 channels + trigger (:mod:`.emg`)
    DIR/s{k}_sensor_{a,b}.emg.truth.npz  its truth: drives, clock offset, lag, mixing

Command line: ``python -m sensor_removal synth --out DIR [--seconds S] [--fps F]
[--size WxH] [--seed N]``.

The package: :mod:`.arguments` (defaults, checks, :class:`SynthError`), :mod:`.script`
(expression signals), :mod:`.faces` (face geometry and drawing), :mod:`.sensors`
(electrodes, cables, swabs), :mod:`.render` (frames in memory), :mod:`.emg` (sEMG
with ground truth), :mod:`.files`
(:func:`make_subject`, the side files) and :mod:`.cli`.
"""

from sensor_removal.synthetic.arguments import (
    DEFAULT_FPS,
    DEFAULT_SECONDS,
    DEFAULT_SIZE,
    SynthError,
)
from sensor_removal.synthetic.cli import main
from sensor_removal.synthetic.files import MASK_KEYS, load_expressions, load_mask, make_subject
from sensor_removal.synthetic.render import RECORDINGS, SynthFrame, render_recording
from sensor_removal.synthetic.script import SIGNALS

__all__ = [
    "SIGNALS",
    "MASK_KEYS",
    "DEFAULT_SECONDS",
    "DEFAULT_FPS",
    "DEFAULT_SIZE",
    "SynthError",
    "RECORDINGS",
    "SynthFrame",
    "make_subject",
    "render_recording",
    "load_mask",
    "load_expressions",
    "main",
]
