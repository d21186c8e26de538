import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# The slow tier: files whose tests train, export to every runtime, kill processes or run the
# studies (each above ~15 s in a `pytest --durations=0` run). `make test-fast` (`pytest -m "not
# slow"`) leaves them out and runs in about a minute; `make test` and CI run everything.
SLOW_FILES = {
    "test_models.py", "test_study.py", "test_runtimes.py", "test_crash.py", "test_trainer.py",
    "test_export.py", "test_camvid_imagenet.py", "test_synthetic.py", "test_speedups.py",
    "test_backends.py", "test_cli.py", "test_readme.py", "test_bench.py", "test_demo.py",
    "test_robustness.py", "test_efficientnet_lite.py", "test_predict.py", "test_check_data.py",
    "test_finetune.py", "test_export_fast.py", "test_probe_imagenet.py",
    "test_quantize_guided.py", "test_speed_table.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)


# `make test` runs two pytest-xdist workers on the two cores: one intra-op thread each, so the
# workers do not oversubscribe the machine; a plain `pytest` run keeps two threads
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)


@pytest.fixture
def one_thread():
    """One intra-op thread: tests that check behaviour, not speed, run several times faster on
    a shared 2-core machine than with two OpenMP threads competing with another job."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def randomise():
    """``randomise(model)``: non-zero values for zero-initialised parameters (GAI's γ, GUM's
    offset head) and non-trivial BN statistics and affine terms, so that attention, offsets and
    BN all change the output; returns the model in eval mode."""

    from studies.common import randomise_weights

    return randomise_weights
