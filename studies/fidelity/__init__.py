"""Measure what each official-compatible switch changes (docs/fidelity.md's "effect" column).

``python -m studies.fidelity.run`` (see its module docstring)."""
