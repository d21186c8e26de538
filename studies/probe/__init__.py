"""The upsamplers on a shared, trained backbone: CamVid, two stages, one command, resumable.

``python -m studies.probe.run`` (see its module docstring)."""
