"""FANet +Temp against FANet on CamVid: same recipe, budget, seed and initialisation.

``python -m studies.temporal.run`` (see its module docstring)."""
