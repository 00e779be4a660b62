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


@pytest.fixture(scope="session")
def real_tokens(tmp_path_factory):
    """A token folder prepared from 24 real Bach chorales of music21's corpus, by our own commands."""
    from musicmha.cli import main

    root = tmp_path_factory.mktemp("real")
    assert main(["corpus", "--out", str(root / "corpus"), "--collections", "bach", "--limit", "24",
                 "--workers", "2"]) == 0
    assert main(["prepare", str(root / "corpus"), "--out", str(root / "tokens"), "--workers", "2"]) == 0
    return root / "tokens"


@pytest.fixture(scope="session")
def prompt_tokens(tmp_path_factory) -> Path:
    """The bundled prompts (data/prompts) prepared by `musicmha prepare` with the default tokenizer.

    It lives here, not in tests/data/conftest.py: a second conftest.py would take the module name
    `conftest` that test modules import `tiny_config` and `POSITIONS` from.
    """
    from datafiles import copy_prompts

    from musicmha.cli import main

    root = tmp_path_factory.mktemp("prompt_tokens")
    copy_prompts(root / "in")
    assert main(["prepare", str(root / "in"), "--out", str(root / "out"), "--workers", "2"]) == 0
    return root / "out"
