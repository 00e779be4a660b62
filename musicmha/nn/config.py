"""Model configuration: a dataclass validated on construction, serialized as config.json."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musicmha.errors import ConfigError

CONFIG_FORMAT = "musicmha.model/1"
POSITION_MODES: tuple[str, ...] = ("relative", "rope", "alibi", "none")
# How attention is computed; every backend computes the same function (see musicmha/nn/attention.py).
ATTENTION_BACKENDS: tuple[str, ...] = ("auto", "sdpa", "blocked", "flex")
MAX_PREVIOUS_TOKENS = 8  # what a KV cache remembers of the tokens fed before (ModelConfig.previous_tokens)


@dataclass
class ModelConfig:
    """Everything needed to build a MusicTransformer; the model is a pure function of this."""

    # Each field's metadata "help" (and "choices") is its documentation, shown by `musicmha train --help`.
    vocab_size: int = field(metadata={"help": "token ids the model reads and predicts (the tokenizer's vocabulary)"})
    d_model: int = field(default=256, metadata={"help": "width of the residual stream (the embedding size)"})
    n_layers: int = field(default=4, metadata={"help": "transformer blocks"})
    n_heads: int = field(default=4, metadata={"help": "attention heads per block; must divide d_model"})
    d_ff: int = field(default=0, metadata={"help": "hidden width of each feed-forward layer; 0 means 4 x d_model"})
    dropout: float = field(default=0.1, metadata={"help": "dropout probability while training, in [0, 1)"})
    max_seq_len: int = field(default=1024, metadata={"help": "context length in tokens (the training window)"})
    position: str = field(default="relative", metadata={"help": "how attention sees token positions",
                                                        "choices": POSITION_MODES})
    # 0 means max_seq_len - 1: every distance in the context its own embedding
    max_relative_distance: int = field(default=0, metadata={
        "help": "relative positions: longer distances share the last embedding; 0 means max_seq_len - 1"})
    relative_buckets: int = field(default=0, metadata={
        "help": "relative positions: 0 gives every distance its own embedding; N > 0 shares log-spaced buckets "
                "(T5): N/2 exact near distances, the rest log-spaced up to max_relative_distance"})
    rope_base: float = field(default=10000.0, metadata={"help": "rope positions: base of the rotation "
                                                                "frequencies (> 1)"})
    bias: bool = field(default=False, metadata={"help": "bias terms in the attention and feed-forward layers"})
    previous_tokens: int = field(default=0, metadata={
        "help": f"each position also reads the N tokens before it (a learned embedding per distance, added to "
                f"its own; 0..{MAX_PREVIOUS_TOKENS}), so one attention layer can find where the music just heard "
                "came before and copy what followed it"})
    # a speed choice only: weights are interchangeable between backends
    attention_backend: str = field(default="auto", metadata={
        "help": "how attention is computed; a speed choice only: every backend computes the same function",
        "choices": ATTENTION_BACKENDS})
    extra: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "free-form notes (never read by the model)"})

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_seq_len",
                     "max_relative_distance", "relative_buckets", "previous_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_ff < 0 or self.max_relative_distance < 0:
            raise ConfigError("d_ff and max_relative_distance must be >= 0 (0 picks the default)")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.position not in POSITION_MODES:
            raise ConfigError(f"position must be one of {', '.join(POSITION_MODES)}; got {self.position!r}")
        if self.position == "rope" and self.head_dim % 2:
            raise ConfigError(f"rope needs an even head dimension; d_model/n_heads = {self.head_dim}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.rope_base, (int, float)) or not math.isfinite(self.rope_base) \
                or self.rope_base <= 1.0:
            raise ConfigError(f"rope_base must be a finite number > 1, got {self.rope_base!r}")
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ConfigError(f"attention_backend must be one of {', '.join(ATTENTION_BACKENDS)}; "
                              f"got {self.attention_backend!r}")
        if not isinstance(self.bias, bool):
            raise ConfigError(f"bias must be true or false, got {self.bias!r}")
        if not 0 <= self.previous_tokens <= MAX_PREVIOUS_TOKENS:
            raise ConfigError(f"previous_tokens must be between 0 and {MAX_PREVIOUS_TOKENS}, "
                              f"got {self.previous_tokens}")
        if not isinstance(self.extra, dict):
            raise ConfigError("extra must be a JSON object")
        if self.d_ff == 0:
            self.d_ff = 4 * self.d_model
        if self.max_relative_distance == 0:
            self.max_relative_distance = self.max_seq_len - 1
        if self.relative_buckets and not 2 <= self.relative_buckets <= self.max_relative_distance:
            raise ConfigError(f"relative_buckets must be 0 (one embedding per distance) or between 2 and "
                              f"max_relative_distance ({self.max_relative_distance}), got {self.relative_buckets}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return {"format": CONFIG_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> ModelConfig:
        """Build from a dict, refusing unknown or missing fields with a message naming `source`."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        fmt = data.pop("format", CONFIG_FORMAT)
        if fmt != CONFIG_FORMAT:
            raise ConfigError(f"{source}: unsupported format {fmt!r} (expected {CONFIG_FORMAT!r})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}")
        if "vocab_size" not in data:
            raise ConfigError(f"{source}: missing required field vocab_size")
        try:
            return cls(**data)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None

    def save(self, path: str | Path) -> None:
        from musicmha.atomic_files import write_text_atomic

        write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        from musicmha.atomic_files import read_json

        return cls.from_dict(read_json(Path(path)), source=str(path))
