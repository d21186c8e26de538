"""Deployment figures on CamVid: accuracy and latency of trained checkpoints in every runtime.

``python -m studies.deploy.run`` (see its module docstring)."""
