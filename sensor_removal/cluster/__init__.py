"""Many fits at once: the sweep file, one task of the array, submitting (SLURM or local)."""
