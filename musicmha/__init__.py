"""musicmha: symbolic music generation with a causal multi-head attention transformer."""

from .attention import KVCache, MultiHeadAttention
from .errors import CheckpointError, ConfigError, MidiError, MusicmhaError

__version__ = "0.1.0"
__all__ = ["KVCache", "MultiHeadAttention", "CheckpointError", "ConfigError", "MidiError", "MusicmhaError"]
