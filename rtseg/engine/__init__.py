"""Evaluation and inference machinery: metrics (:mod:`.metrics`), test-time prediction
(:mod:`.inference`)."""
