"""Every upsampler on an ImageNet backbone, frozen and end to end, seeds paired (issue 31).

``python -m studies.probe_imagenet.run`` (see its module docstring)."""
