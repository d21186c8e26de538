"""CamVid from ImageNet: ``fpn_lite0_<up>`` fine-tuned from EfficientNet-Lite0's ImageNet

``python -m studies.camvid_imagenet.run`` (see its module docstring)."""
