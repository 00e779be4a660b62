import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # the reference implementations in tests/reference.py

POSITIONS = ["relative", "rope", "alibi", "none"]


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


def tiny_config(position: str = "relative", **overrides):
    from musicmha import ModelConfig

    values = dict(vocab_size=61, d_model=32, n_layers=2, n_heads=4, max_seq_len=96, position=position,
                  dropout=0.0, max_relative_distance=24)
    values.update(overrides)
    return ModelConfig(**values)
