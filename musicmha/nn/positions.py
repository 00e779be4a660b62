"""Position terms for attention: Music Transformer relative logits (skewed), rotary embeddings, ALiBi.

Every function works on absolute query/key positions given by `first_query_pos`: query i sits at position
`first_query_pos + i`, key j at position j. Self-attention over a KV cache uses the position of the first
new token; a full forward and cross-attention use 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _SkewAndScale(torch.autograd.Function):
    """scale * (strided view of y), whose backward writes the gradient back through the same view.

    Autograd's own backward for `as_strided` is a generic scatter that is many times slower than the
    forward; the view here never maps two entries to one element of y (see `relative_logits`), so the
    adjoint is simply a copy into a zeroed y-shaped buffer."""

    @staticmethod
    def forward(ctx, y, size, stride, offset, scale: float):  # type: ignore[override]
        ctx.view, ctx.shape, ctx.scale = (size, stride, offset - y.storage_offset()), y.shape, scale
        return y.as_strided(size, stride, offset) * scale

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        size, stride, offset = ctx.view
        grad_y = grad.new_zeros(ctx.shape)
        grad_y.as_strided(size, stride, offset).copy_(grad * ctx.scale)
        return grad_y, None, None, None, None


def relative_logits(q: torch.Tensor, rel_emb: torch.Tensor, *, n_keys: int, first_query_pos: int,
                    causal: bool, scale: float = 1.0) -> torch.Tensor:
    """scale * S[b, h, i, j], S = q[b, h, i] · E[h, clip(i + first_query_pos - j)], via the skewing trick.

    `rel_emb` is (H, N, D): causal tables hold distances 0..R (N = R + 1), bidirectional ones -R..R
    (N = 2R + 1). Instead of building the (Tq, Tk, D) tensor of Shaw et al., we multiply q by one embedding
    per *distance* (Y = q Eᵀ, the size of the attention logits) and read S out of Y through a strided view:
    column m of Y holds distance d_max - m, so S[i, j] = Y[i, Tq - 1 - i + j], i.e. row stride n_cols - 1.
    With n_cols > n_keys no two (i, j) share an element of Y, which keeps the backward a plain copy.
    Entries whose distance is negative in the causal case read distance 0 (finite); the caller masks them.
    """
    batch, heads, n_queries, head_dim = q.shape
    n_dist = rel_emb.shape[1]
    back = 0 if causal else (n_dist - 1) // 2  # how many negative distances the table holds
    d_max = first_query_pos + n_queries - 1
    n_cols = max(d_max + 1, n_keys + 1) if causal else n_queries + n_keys
    distances = d_max - torch.arange(n_cols, device=q.device)
    index = distances.clamp(min=-back, max=n_dist - 1 - back) + back
    per_distance = rel_emb[:, index]  # (H, n_cols, D): one row per distance, never per (i, j) pair
    y = torch.matmul(q, per_distance.transpose(-1, -2)).contiguous()  # (B, H, Tq, n_cols)
    return _SkewAndScale.apply(y, (batch, heads, n_queries, n_keys),
                               (heads * n_queries * n_cols, n_queries * n_cols, n_cols - 1, 1),
                               y.storage_offset() + n_queries - 1, scale)


def relative_rows(q: torch.Tensor, rel_emb: torch.Tensor, *, n_keys: int, first_query_pos: int) -> torch.Tensor:
    """The causal S of `relative_logits` for a few queries against many cached keys, without the skew.

    Decoding asks for one row per step. The one query at position p sees keys 0..p at distances p..0: while
    p <= R that is q times the first p+1 rows of the table (H, R+1, D), read backwards, so the work grows
    with the context like the attention itself. Otherwise (more queries, or keys past the clipping
    distance) each key gathers its clipped column of q Eᵀ; keys in a query's future get distance 0
    (finite), and the caller masks them."""
    batch, heads, n_queries, _ = q.shape
    max_distance = rel_emb.shape[1] - 1
    table = rel_emb.to(q.dtype)
    if n_queries == 1 and first_query_pos == n_keys - 1 and first_query_pos <= max_distance:
        # heads as the batch of the matmul and the samples as its rows: the table is read once, not per sample
        rows = torch.matmul(q[:, :, 0].transpose(0, 1), table[:, :n_keys].transpose(-1, -2))  # (H, B, Tk)
        return rows.transpose(0, 1)[:, :, None].flip(-1)  # (B, H, 1, Tk)
    per_distance = torch.matmul(q, table.transpose(-1, -2))  # (B, H, Tq, R+1)
    query_pos = torch.arange(n_queries, device=q.device)[:, None] + first_query_pos
    distance = (query_pos - torch.arange(n_keys, device=q.device)).clamp(0, max_distance)
    return per_distance.gather(-1, distance.expand(batch, heads, n_queries, n_keys))


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


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021), "rotate half" layout as in GPT-NeoX and Llama.

    The frequencies and the cos/sin tables are float32 whatever the model's dtype, and the rotation runs in
    float32 before the result is cast back: a bf16 frequency is off by up to 2^-9 of itself, so the angle
    error grows with the distance between query and key (0.4 rad at 2,000 positions) and a bf16 model would
    attend worse the longer its context. The tables are grown on demand, so positions past `max_seq_len`
    (sliding window generation, length-generalization tests) work without a rebuild.
    """

    def __init__(self, head_dim: int, base: float = 10000.0, initial_len: int = 1024) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head dimension, got {head_dim}")
        self.head_dim, self.base = head_dim, base
        self.register_buffer("inv_freq", self._inverse_frequencies(None), persistent=False)
        self._cos = self._sin = torch.empty(0)
        self._grow(initial_len)

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
