"""The command registry (``python -m sensor_removal``) and the plain commands' parsers."""
