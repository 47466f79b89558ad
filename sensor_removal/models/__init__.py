"""The networks and losses of the CycleGAN (models, no training loop)."""
