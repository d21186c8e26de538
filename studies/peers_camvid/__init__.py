"""The real-time peers and the seed networks on CamVid from scratch, one recipe (issue 32).

``python -m studies.peers_camvid.run`` (see its module docstring)."""
