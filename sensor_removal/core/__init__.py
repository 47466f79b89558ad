"""What every layer may use: manifest, video IO and atomic files, tensors, device,
errors, progress, checkpoint reading, argument types, configs. Imports no other layer.
"""
