"""Paper-style tables and plots over subjects (docs/evaluation.md, "Report").

``make_report(results_dirs, out)`` reads the ``results.csv`` (and ``summary.json``,
``series/``) of one or more ``python -m evaluation run`` folders — usually one per
subject — and writes into ``out``:

* ``report.md`` and ``tables.tex`` (booktabs) with
  - **Tables 1–3 in the paper's layout** (the default view): five rows N1–N2, N1–S1,
    N1–C1, N2–S2, N2–C2 (:func:`paper_row`), the task columns in the paper's order
    Schaede | Emotion | Sentence, the paper's precision (LPIPS 2 decimals, FID 1, DTW 1,
    MAPE 2 in Table 2 and 1 in Table 3), each followed by the paper's published block with
    the same rows and columns and the checks the paper draws (:mod:`.published`): Table 1
    LPIPS / FID; Table 2 AU time series, one block per AU model (``xgb``, ``v2``; the
    caption names the paper model it stands for, its AUs and their count, and the
    paper model's AUs it lacks; AU43 excluded); Table 3 emotion time series, per model;
  - **our addition**, labelled as such: the same tables with the sessions averaged into
    three rows (N1–N2, N–S, N–C) and a ``whole``-video column (files ``ours_*``), and a
    ground-truth table (PSNR / SSIM over the whole crop, inside and outside the sensor
    mask, flicker in the sensor area; sensor, full repaint and composited/cleaned) when
    the results have ground-truth rows (synthetic subjects), and a temporal-stability
    table (frame-to-frame change beyond the normal video's) with ``temporal`` rows;
  - with ``composited`` result folders (the post-fit benchmark when it composites: the
    main tables on the paper's full repaint, these on our composited video), **the same
    tables on the composited video**, in a section of their own labelled as our
    extension (files ``composited_*``, :func:`~evaluation.report.ours.composited_tables`);
  - the frames without a face per video (py-feat NaN rows);
  - the landmark tables (ours, :mod:`evaluation.report.landmarks`) when the results have
    ``lm_*`` rows;
  - an appendix with every subject's own Tables 1–3 in the paper's layout
    (``subjects/<subject>_table*.csv``);
* ``table1_perceptual.csv``, ``table2_au_<model>.csv``, ``table3_emotion_<model>.csv``,
  ``ours_*.csv``, ``table_groundtruth.csv``, ``no_face_frames.csv`` — the same numbers,
  machine-readable (``mean``, ``std``, ``subjects`` per cell);
* ``fig_au_<subject>.png`` / ``fig_emotion_<subject>.png`` — AU and emotion curves of
  N, S and C of one subject, session 1 (like the paper's Fig. 6 and 7).

Aggregation: every value is first averaged within a subject (over the comparisons of a
row — in the paper layout the sensor videos of one session, in ours also the sessions —
and, for Tables 2/3, over AUs without AU43, resp. over emotions), then mean ±
std (sample std, ddof 1) over subjects; with a single subject the std is left out.
MAPE is a fraction (×100 for percent). All files are written atomically.

The package: :mod:`.tables` (labels, formats, :class:`Table`, the aggregation),
:mod:`.paper` (Tables 1–3 in the paper's layout), :mod:`.published` (the paper's own
values, ``data/paper_tables.csv``, and the checks), :mod:`.ours` (our addition),
:mod:`.output` (Markdown, LaTeX, files), :mod:`.plots` and :mod:`.make` (``make_report``).
"""

from evaluation.report.make import (
    REPORT_COMPLETE,
    ReportError,
    fid_set_size,
    make_report,
    missing_cleaned,
    no_face_table,
    not_shown,
    report_is_complete,
)
from evaluation.report.ours import (
    COMPOSITED_PREFIX,
    COMPOSITED_SECTION,
    composited_tables,
    extension_tables,
    facial_table,
    groundtruth_table,
    perceptual_table,
    temporal_table,
)
from evaluation.report.paper import (
    PAPER_FORMATS,
    PAPER_SEGMENTS,
    au_model_note,
    models_of,
    paper_facial_table,
    paper_perceptual_table,
    paper_row,
    paper_tables,
)
from evaluation.report.plots import plot_curves
from evaluation.report.tables import (
    GT_COMPOSITED_LABEL,
    GT_LABELS,
    KIND_ROWS,
    METRIC_LABELS,
    SEGMENT_LABELS,
    Table,
    build_table,
    over_subjects,
    subject_means,
)

__all__ = [
    "COMPOSITED_PREFIX",
    "COMPOSITED_SECTION",
    "composited_tables",
    "GT_COMPOSITED_LABEL",
    "GT_LABELS",
    "KIND_ROWS",
    "METRIC_LABELS",
    "PAPER_FORMATS",
    "PAPER_SEGMENTS",
    "REPORT_COMPLETE",
    "SEGMENT_LABELS",
    "ReportError",
    "Table",
    "au_model_note",
    "build_table",
    "extension_tables",
    "facial_table",
    "fid_set_size",
    "groundtruth_table",
    "make_report",
    "missing_cleaned",
    "models_of",
    "no_face_table",
    "not_shown",
    "over_subjects",
    "paper_facial_table",
    "paper_perceptual_table",
    "paper_row",
    "paper_tables",
    "perceptual_table",
    "plot_curves",
    "report_is_complete",
    "subject_means",
    "temporal_table",
]
