"""Shared by the app tests: a tiny untrained checkpoint made in about a second, and a free port."""

from __future__ import annotations

import socket
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACH = ROOT / "data" / "prompts" / "bach_bwv66.6_chorale.mid"


def make_tiny_checkpoint(folder: Path) -> Path:
    from musicmha import ModelConfig
    from musicmha.nn.model import MusicTransformer
    from musicmha.data.tokenizer import MusicTokenizer

    tok = MusicTokenizer.from_config()
    model = MusicTransformer(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2,
                                         max_seq_len=256))
    model.save_pretrained(folder)
    tok.save(folder)
    return folder


def tiny_generator(context: int = 512, layers: int = 2, heads: int = 4):
    """A MusicGenerator of random weights (seed 0) over the default tokenizer: for tests whose promises are
    structural (masks, exact notes), not musical."""
    import torch

    from musicmha import ModelConfig
    from musicmha.data.tokenizer import MusicTokenizer
    from musicmha.generation.music_generator import MusicGenerator
    from musicmha.nn.model import MusicTransformer

    tokenizer = MusicTokenizer.from_config()
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=layers, n_heads=heads,
                         max_seq_len=context, dropout=0.0)
    return MusicGenerator(MusicTransformer(config), tokenizer)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slow_down_generation(monkeypatch, seconds_per_token: float) -> None:
    """Make each generated token take a while, so a test can stop a generation midway (an untrained model may
    otherwise end before the test acts)."""
    from musicmha.app.job import GenerationJob

    record = GenerationJob._callback

    def slow(self, step, tokens):
        time.sleep(seconds_per_token)
        return record(self, step, tokens)

    monkeypatch.setattr(GenerationJob, "_callback", slow)


def wav_samples(path):
    """The int16 samples of a WAV file the app wrote (its players get files, not arrays)."""
    import wave

    import numpy as np

    with wave.open(str(path), "rb") as file:
        return np.frombuffer(file.readframes(file.getnframes()), dtype=np.int16)
