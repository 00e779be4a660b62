"""musicmha: symbolic music generation with a causal multi-head attention transformer.

Public names are imported lazily (PEP 562), so `import musicmha.data.prepare` or `musicmha --help` does not pay
for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from musicmha.errors import CheckpointError, ConfigError, MidiError, MusicmhaError

__version__ = "0.1.0"

_LAZY = {
    "KVCache": "musicmha.nn.attention",
    "MultiHeadAttention": "musicmha.nn.attention",
    "ModelConfig": "musicmha.nn.config",
    "MusicTransformer": "musicmha.nn.model",
}

__all__ = [*_LAZY, "CheckpointError", "ConfigError", "MidiError", "MusicmhaError", "__version__"]

if TYPE_CHECKING:
    from musicmha.nn.attention import KVCache, MultiHeadAttention
    from musicmha.nn.config import ModelConfig
    from musicmha.nn.model import MusicTransformer


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'musicmha' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
