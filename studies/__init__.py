"""Finished experiments, one folder per study, each run from the repository root as
``python -m studies.<folder>.run`` (options: ``--help``). What they share (cached train-then-test,
paired-difference and per-class tables, figure grids) is :mod:`studies.common`.

* ``camvid_study``: the upsamplers from scratch on CamVid, same recipe and budget.
* ``probe``: the upsamplers as fresh decoders on a shared, trained CamVid backbone.
* ``camvid_imagenet``: ``fpn_lite0_gum`` from ImageNet weights against from scratch.
* ``probe_imagenet``: every upsampler on EfficientNet-Lite0's ImageNet weights, frozen and
  end to end, seeds paired (issue 31).
* ``temporal``: FANet +Temp against FANet on CamVid.
* ``deploy``: accuracy and latency of trained checkpoints in every runtime (fp32, int8).
* ``time_augment``: the fused scale+crop augmentation against scale, then crop.
* ``fidelity``: what each official-compatible model switch changes (docs/fidelity.md).

Build and profiling tools are in :mod:`tools`.
"""
