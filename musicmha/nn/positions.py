"""Position schemes: how an attention layer knows where its tokens are, one module per scheme.

`MultiHeadAttention` calls every scheme the same way, whatever `position=` names:
- `rotate(x, first_pos)` on the queries and keys before attention (and before the keys are cached);
- `logit_bias(q, n_keys=, first_query_pos=)`: the term added to the scaled logits, or None;
- `fast_attention(...)`: the whole causal attention through a dedicated kernel, where `has_fast_kernel`;
and reads capabilities from class attributes: `extrapolates` (positions past max_seq_len mean something),
`absolute_table` (the model adds learned absolute positions to the token embeddings), `has_fast_kernel`,
`constant_bias` (the bias depends on the shape only, so the attention may cache it).

| position=  | class             | q/k           | logit bias            | model
| "relative" | RelativePosition  | -             | q_i · E[clip(i - j)]  | -   (E: per distance, or log buckets)
| "rope"     | RotaryEmbedding   | rotated       | -                     | -
| "alibi"    | ALiBi             | -             | -slope_h · |i - j|    | -
| "none"     | AbsolutePosition  | -             | -                     | learned table up to max_seq_len

`build_position_scheme` is the one place that turns a mode name into a scheme (`position_scheme_type` for
the class alone). Positions are absolute: query i sits at `first_query_pos + i`, key j at j; a full
forward and cross-attention use 0, self-attention over a KV cache the position of the first new token.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from musicmha.nn.relative_kernel import blocked_causal_relative_attention, flex_causal_relative_attention
from musicmha.nn.skew import relative_logits, relative_rows


class PositionScheme(nn.Module):
    """The interface (and the defaults: content-only attention, no kernel of its own)."""

    name: ClassVar[str]
    extrapolates: ClassVar[bool] = True
    absolute_table: ClassVar[bool] = False
    has_fast_kernel: ClassVar[bool] = False
    constant_bias: ClassVar[bool] = False

    def rotate(self, x: torch.Tensor, first_pos: int) -> torch.Tensor:
        """x (B, H, T, D) as seen at positions first_pos .. first_pos + T - 1 (queries and keys)."""
        return x

    def logit_bias(self, q: torch.Tensor, *, n_keys: int, first_query_pos: int) -> torch.Tensor | None:
        """(B or 1, H, Tq, Tk) term added to the scaled logits of q (B, H, Tq, D), or None for none."""
        return None

    def fast_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, backend: str, scale: float,
                       dropout_p: float, block_size: int) -> torch.Tensor:
        """Causal self-attention over a whole sequence from position 0 through `backend` ("blocked", "flex")."""
        raise NotImplementedError(f"position={self.name!r} has no attention kernel of its own")

    @classmethod
    def build(cls, *, n_heads: int, head_dim: int, causal: bool, max_relative_distance: int,
              rope_base: float, relative_buckets: int = 0) -> PositionScheme:
        """The scheme from the attention's settings (see `build_position_scheme`)."""
        return cls()


class AbsolutePosition(PositionScheme):
    """position="none": attention on content only; the model adds a learned embedding per absolute position,
    which exists for positions below max_seq_len only."""

    name = "none"
    extrapolates = False
    absolute_table = True


def distance_buckets(max_distance: int, n_buckets: int) -> torch.Tensor:
    """The bucket of each distance 0..max_distance (long, (max_distance + 1,)), as in T5 (Raffel et al.
    2020): the first n_buckets // 2 distances have a bucket each, the rest share log-spaced buckets up to
    max_distance, which falls in the last one. Near distances stay exact (the previous note, the beat), and a
    far distance shares its embedding with its neighbours, so every far bucket gets gradient from many
    distances instead of one embedding per distance that is seldom seen at all."""
    if not 2 <= n_buckets <= max_distance:
        raise ValueError(f"relative buckets must be between 2 and the largest distance ({max_distance}), "
                         f"got {n_buckets}")
    exact = n_buckets // 2
    distance = torch.arange(max_distance + 1, dtype=torch.float64)
    spread = torch.log(distance.clamp(min=exact) / exact) / math.log((max_distance + 1) / exact)
    far = exact + (spread * (n_buckets - exact)).long()
    return torch.where(distance < exact, distance.long(), far).clamp(max=n_buckets - 1)


class RelativePosition(PositionScheme):
    """Music Transformer relative attention (Huang et al. 2018): a learned embedding per head for each distance
    0..max_distance (farther distances share the last one; bidirectional layers also learn the negative
    ones), whose term q_i · E[i - j] enters the logits through the skew (`musicmha.nn.skew`).

    With `buckets` > 0 the distances share log-spaced buckets (`distance_buckets`): the learned table is
    (H, buckets, D) per direction, and `table()` spreads it over the distances, so the skew and the kernels
    read the same per-distance table either way."""

    name = "relative"
    has_fast_kernel = True

    def __init__(self, n_heads: int, head_dim: int, *, max_distance: int, causal: bool, buckets: int = 0) -> None:
        super().__init__()
        if max_distance < 0:
            raise ValueError(f"max_relative_distance must be >= 0, got {max_distance}")
        self.causal, self.scale = causal, head_dim**-0.5  # Huang et al.: (QKᵀ + S_rel) / sqrt(D)
        self.buckets = buckets
        n_distances = max_distance + 1 if causal else 2 * max_distance + 1
        if not buckets:
            self.relative_embeddings = nn.Parameter(torch.randn(n_heads, n_distances, head_dim) * head_dim**-0.5)
            return
        index = distance_buckets(max_distance, buckets)  # distances 0..R
        if not causal:  # the table holds -R..R; negative distances use a second set of buckets
            index = torch.cat([buckets + index.flip(0)[:-1], index])
        self.register_buffer("bucket_of_distance", index, persistent=False)
        n_rows = buckets if causal else 2 * buckets
        self.bucket_embeddings = nn.Parameter(torch.randn(n_heads, n_rows, head_dim) * head_dim**-0.5)

    @classmethod
    def build(cls, *, n_heads: int, head_dim: int, causal: bool, max_relative_distance: int,
              rope_base: float, relative_buckets: int = 0) -> RelativePosition:
        return cls(n_heads, head_dim, max_distance=max_relative_distance, causal=causal, buckets=relative_buckets)

    def table(self) -> torch.Tensor:
        """(H, N, D): one embedding per distance, as the skew reads it (a gather of the buckets' table)."""
        if not self.buckets:
            return self.relative_embeddings
        return self.bucket_embeddings[:, self.bucket_of_distance]

    def logit_bias(self, q: torch.Tensor, *, n_keys: int, first_query_pos: int) -> torch.Tensor:
        if self.causal and q.shape[2] < n_keys:  # decoding against a cache: rows, no skew
            return relative_rows(q * self.scale, self.table(), n_keys=n_keys, first_query_pos=first_query_pos)
        return relative_logits(q, self.table(), n_keys=n_keys, first_query_pos=first_query_pos,
                               causal=self.causal, scale=self.scale)

    def fast_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, backend: str, scale: float,
                       dropout_p: float, block_size: int) -> torch.Tensor:
        if backend == "blocked":
            return blocked_causal_relative_attention(q, k, v, self.table(), scale=scale,
                                                     dropout_p=dropout_p, block_size=block_size)
        if backend == "flex":
            return flex_causal_relative_attention(q, k, v, self.table(), scale=scale)
        raise ValueError(f"no relative attention kernel named {backend!r}")


class RotaryEmbedding(PositionScheme):
    """Rotary position embedding (Su et al. 2021), "rotate half" layout as in GPT-NeoX and Llama.

    The frequencies and the cos/sin tables are float32 whatever the model's dtype, and the rotation runs in
    float32 before the result is cast back: a bf16 frequency is off by up to 2^-9 of itself, so the angle
    error grows with the distance between query and key (0.4 rad at 2,000 positions) and a bf16 model would
    attend worse the longer its context. The tables are grown on demand, so positions past `max_seq_len`
    (sliding window generation, length-generalization tests) work without a rebuild.
    """

    name = "rope"

    def __init__(self, head_dim: int, base: float = 10000.0, initial_len: int = 1024) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head dimension, got {head_dim}")
        self.head_dim, self.base = head_dim, base
        self.register_buffer("inv_freq", self._inverse_frequencies(None), persistent=False)
        self._cos = self._sin = torch.empty(0)
        self._grow(initial_len)

    @classmethod
    def build(cls, *, n_heads: int, head_dim: int, causal: bool, max_relative_distance: int,
              rope_base: float, relative_buckets: int = 0) -> RotaryEmbedding:
        return cls(head_dim, base=rope_base)

    def _inverse_frequencies(self, device: torch.device | None) -> torch.Tensor:
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=device) / self.head_dim
        return 1.0 / (self.base**exponents)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        # `.to(dtype)`, `.half()`, `.bfloat16()` convert every floating-point buffer; keep the move to a new
        # device but recompute the frequencies (a constant) in float32 there, and the tables from them.
        super()._apply(fn, recurse)
        self.inv_freq = self._inverse_frequencies(self.inv_freq.device)
        self._grow(self._cos.shape[0])
        return self

    def _grow(self, length: int) -> None:
        t = torch.arange(length, dtype=torch.float32, device=self.inv_freq.device)
        angles = torch.outer(t, self.inv_freq)  # (L, D/2)
        angles = torch.cat([angles, angles], dim=-1)  # (L, D)
        self._cos, self._sin = angles.cos(), angles.sin()

    def tables(self, end: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 (cos, sin), each (L, D) with L >= end, on `device`."""
        if end > self._cos.shape[0] or self._cos.device != device:
            self._grow(max(end, 2 * self._cos.shape[0]))
            self._cos, self._sin = self._cos.to(device), self._sin.to(device)
        return self._cos, self._sin

    def forward(self, x: torch.Tensor, first_pos: int = 0) -> torch.Tensor:
        """Rotate x (B, H, T, D) as if its T rows sat at positions first_pos .. first_pos + T - 1."""
        end = first_pos + x.shape[-2]
        cos, sin = self.tables(end, x.device)
        compute = torch.promote_types(x.dtype, torch.float32)  # bf16/fp16 rotate in fp32 (fp64 stays fp64)
        cos, sin = cos[first_pos:end].to(compute), sin[first_pos:end].to(compute)
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return (x.to(compute) * cos + rotated.to(compute) * sin).to(x.dtype)

    def rotate(self, x: torch.Tensor, first_pos: int) -> torch.Tensor:
        return self(x, first_pos)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """The standard ALiBi slopes (Press et al. 2022): a geometric sequence starting at 2^(-8/n); for a head
    count that is not a power of two, the power-of-two sequence followed by every other slope of the next.

    Always float32, computed in Python: under a `torch.device("meta")` context (how
    `from_pretrained` checks shapes) a tensor round trip would have no data to read."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: torch.Tensor, *, n_queries: int, n_keys: int, first_query_pos: int) -> torch.Tensor:
    """(H, Tq, Tk) bias -slope_h * |i + first_query_pos - j| (one-sided when the caller masks the future)."""
    query_pos = torch.arange(n_queries, device=slopes.device) + first_query_pos
    key_pos = torch.arange(n_keys, device=slopes.device)
    distance = (query_pos[:, None] - key_pos[None, :]).abs().to(slopes.dtype)  # (Tq, Tk)
    return -slopes[:, None, None] * distance


class ALiBi(PositionScheme):
    """A per-head linear distance penalty with the standard slopes (Press et al. 2022); nothing learned."""

    name = "alibi"
    constant_bias = True

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)

    @classmethod
    def build(cls, *, n_heads: int, head_dim: int, causal: bool, max_relative_distance: int,
              rope_base: float, relative_buckets: int = 0) -> ALiBi:
        return cls(n_heads)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        # `.to(torch.bfloat16)` would round the slopes and then the distances (bf16 holds integers exactly
        # only up to 256); they are constants, so recompute them in float32 on the new device.
        super()._apply(fn, recurse)
        self.slopes = alibi_slopes(self.n_heads).to(self.slopes.device)
        return self

    def logit_bias(self, q: torch.Tensor, *, n_keys: int, first_query_pos: int) -> torch.Tensor:
        return alibi_bias(self.slopes, n_queries=q.shape[2], n_keys=n_keys,
                          first_query_pos=first_query_pos).to(q.dtype)[None]


POSITION_SCHEMES: dict[str, type[PositionScheme]] = {
    "relative": RelativePosition, "rope": RotaryEmbedding, "alibi": ALiBi, "none": AbsolutePosition}


def position_scheme_type(position: str) -> type[PositionScheme]:
    """The class behind a `position=` name, for its capabilities (`extrapolates`, `absolute_table`, ...)."""
    try:
        return POSITION_SCHEMES[position]
    except KeyError:
        raise ValueError(f"position must be one of {', '.join(POSITION_SCHEMES)}; got {position!r}") from None


def build_position_scheme(position: str, *, n_heads: int, head_dim: int, causal: bool = True,
                          max_relative_distance: int = 1023, rope_base: float = 10000.0,
                          relative_buckets: int = 0) -> PositionScheme:
    """The scheme of one attention layer; each takes the settings it uses and ignores the others."""
    return position_scheme_type(position).build(n_heads=n_heads, head_dim=head_dim, causal=causal,
                                                max_relative_distance=max_relative_distance, rope_base=rope_base,
                                                relative_buckets=relative_buckets)
