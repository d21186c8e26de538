"""Inference below the Segmenter: test-time augmentation (:mod:`.tta`: whole/slide, scales,
flip), data-set evaluation (:mod:`.evaluate`), metrics (:mod:`.metrics`: IoU, boundary F),
memory planning of a pass (:mod:`.memory`, :mod:`.peak_memory`)."""
