"""Time the scale+crop augmentation: the two-step RandomScale + RandomCrop (the whole image

``python -m studies.time_augment.run`` (see its module docstring)."""
