"""What strings training, cleaning and evaluation together: the post-fit benchmark,
the fit-time perceptual metrics, the demo, the comparison picture.
"""
