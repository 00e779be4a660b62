"""Fixtures shared by the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from datafiles import copy_prompts

from musicmha.cli import main


@pytest.fixture(scope="session")
def prompt_tokens(tmp_path_factory) -> Path:
    """The bundled prompts (data/prompts) prepared by `musicmha prepare` with the default tokenizer."""
    root = tmp_path_factory.mktemp("prompt_tokens")
    copy_prompts(root / "in")
    assert main(["prepare", str(root / "in"), "--out", str(root / "out"), "--workers", "2"]) == 0
    return root / "out"
