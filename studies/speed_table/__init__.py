"""The seeds' networks against the real-time peers: one speed table in every runtime.

``python -m studies.speed_table.run`` (see its module docstring)."""
