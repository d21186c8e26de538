"""The upsampler study on CamVid: same backbone, recipe and budget; only the upsampler changes.

``python -m studies.camvid_study.run`` (see its module docstring)."""
