"""The interactive app (``python -m lightning_app``): watch runs, start and stop fits,
review normal | sensor | cleaned videos with AU curves, clean an uploaded clip.

Built on Gradio in the spirit of a Lightning App. Modules: :mod:`~lightning_app.paths`
(what may be served), :mod:`~lightning_app.runs` (reading run folders),
:mod:`~lightning_app.training` (fit subprocesses), :mod:`~lightning_app.review`,
:mod:`~lightning_app.tryout`, :mod:`~lightning_app.ui` (the page),
:mod:`~lightning_app.server` and :mod:`~lightning_app.cli`.
"""
