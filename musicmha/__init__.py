"""musicmha: symbolic music generation with a causal multi-head attention transformer.

The user-facing names live here, so scripts need not know the package's layout:

    from musicmha import MusicGenerator, GenerationRequest

    generator = MusicGenerator.from_pretrained()          # the shipped default model
    request = GenerationRequest(bars=8, num_samples=2)    # or keywords: continue_midi(prompt, bars=8, ...)
    results = generator.continue_midi("song.mid", request)

They are imported lazily (PEP 562), so `import musicmha.data.prepare` or `musicmha --help` does not pay
for importing torch. tests/test_public_api.py pins the list.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from musicmha.errors import CheckpointError, ConfigError, MidiError, MusicmhaError

__version__ = "0.1.0"

_LAZY = {
    # making music
    "MusicGenerator": "musicmha.generation.music_generator",
    "GenerationRequest": "musicmha.generation.request",
    "SamplingOptions": "musicmha.generation.options",
    "GenerationResult": "musicmha.generation.result",
    "generate": "musicmha.generation.sampling",
    # the model and its parts
    "MusicTransformer": "musicmha.nn.model",
    "ModelConfig": "musicmha.nn.config",
    "MultiHeadAttention": "musicmha.nn.attention",
    "KVCache": "musicmha.nn.attention",
    "MusicTokenizer": "musicmha.data.tokenizer",
    # checkpoints: the model and tokenizer of a folder or a shipped model's name
    "load_checkpoint": ("musicmha.checkpoint", "load"),
}

__all__ = [*_LAZY, "CheckpointError", "ConfigError", "MidiError", "MusicmhaError", "__version__"]

if TYPE_CHECKING:
    from musicmha.checkpoint import load as load_checkpoint
    from musicmha.data.tokenizer import MusicTokenizer
    from musicmha.generation.music_generator import MusicGenerator
    from musicmha.generation.options import SamplingOptions
    from musicmha.generation.request import GenerationRequest
    from musicmha.generation.result import GenerationResult
    from musicmha.generation.sampling import generate
    from musicmha.nn.attention import KVCache, MultiHeadAttention
    from musicmha.nn.config import ModelConfig
    from musicmha.nn.model import MusicTransformer


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name] if isinstance(_LAZY[name], tuple) else (_LAZY[name], name)
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'musicmha' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
