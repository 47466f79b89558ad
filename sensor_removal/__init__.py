"""sensor-removal: remove sEMG electrodes from face videos with a per-subject CycleGAN
(Büchner et al., "Let's Get the FACS Straight", VISAPP 2023)."""

__version__ = "0.1.0"
