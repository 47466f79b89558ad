"""Training one subject's CycleGAN: the LightningModule, the data module and frame
cache, callbacks, progress bars and the LightningCLI.
"""
