from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)


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
