"""The metric families of the evaluation: perceptual, facial, landmarks, ground truth,
temporal, time series.
"""
