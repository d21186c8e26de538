"""``pretrained="imagenet"`` downloads: a loopback HTTP server stands in for the file host."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from rtseg.backbones import create_backbone, hub, resnet18
from rtseg.errors import CheckpointError


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, served folder, request paths) of a server on 127.0.0.1."""
    folder = tmp_path / "served"
    folder.mkdir()
    requests: list[str] = []

    class Handler(_Files):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", folder, requests
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def serve_state_dict(folder: Path, state: dict, stem: str, good_hash: bool = True) -> str:
    """Write ``state`` as ``stem-<sha256 prefix>.pth`` (a wrong prefix if not ``good_hash``)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    prefix = hashlib.sha256(data).hexdigest()[:8]
    if not good_hash:
        prefix = "".join("0" if c != "0" else "1" for c in prefix)
    name = f"{stem}-{prefix}.pth"
    (folder / name).write_bytes(data)
    return name


def test_imagenet_resnet_is_downloaded_checked_and_then_read_from_the_cache(
        server, torch_home, monkeypatch) -> None:
    base, folder, requests = server
    source = resnet18()
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in source.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # the classifier is dropped on load
    name = serve_state_dict(folder, state, "resnet18")
    monkeypatch.setitem(hub.IMAGENET_URLS, "resnet18", f"{base}/{name}")

    model = create_backbone("resnet18", "imagenet")
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert (torch_home / name).is_file() and requests == [f"/{name}"]

    again = create_backbone("resnet18", "imagenet")  # from the cache: no second request
    assert requests == [f"/{name}"]
    assert torch.equal(again.conv1.weight, state["conv1.weight"])


def test_a_hash_mismatch_is_refused_and_leaves_nothing_in_the_cache(
        server, torch_home) -> None:
    base, folder, _ = server
    name = serve_state_dict(folder, {"w": torch.ones(3)}, "resnet18", good_hash=False)
    with pytest.raises(CheckpointError) as err:
        hub.cached_download(f"{base}/{name}")
    assert "\n" not in str(err.value) and name in str(err.value)
    assert not torch_home.exists() or list(torch_home.iterdir()) == []


def test_offline_download_fails_fast_naming_the_url_and_the_cache_path(torch_home) -> None:
    with socket.socket() as s:  # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/resnet18-f37072fd.pth"
    with pytest.raises(CheckpointError) as err:
        hub.cached_download(url)
    message = str(err.value)
    assert "\n" not in message and url in message
    assert str(torch_home / "resnet18-f37072fd.pth") in message
    assert socket.getdefaulttimeout() is None  # the bounded timeout was put back


def test_a_corrupt_cached_file_is_named(server, torch_home) -> None:
    base, folder, requests = server
    name = serve_state_dict(folder, {"w": torch.ones(3)}, "resnet18")
    torch_home.mkdir(parents=True)
    (torch_home / name).write_bytes(b"not the file")
    with pytest.raises(CheckpointError, match="corrupt.*delete it") as err:
        hub.cached_download(f"{base}/{name}")
    assert str(torch_home / name) in str(err.value) and requests == []


def test_backbones_without_a_published_file_say_so() -> None:
    for name in ("resnet18_deep", "dfnetv2"):
        with pytest.raises(CheckpointError, match="no ImageNet file.*local weights file"):
            create_backbone(name, "imagenet")


def test_a_path_is_used_as_it_is(tmp_path: Path) -> None:
    assert hub.resolve_pretrained("resnet18", tmp_path / "w.pth") == tmp_path / "w.pth"
