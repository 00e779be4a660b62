"""Multi-head attention with one interface for every position scheme.

Per-head query/key/value projections, scaled dot-product attention per head, concatenation of the heads and
an output projection (Vaswani et al. 2017). Position schemes, chosen with `position=`:

- "relative": Music Transformer relative attention (Huang et al. 2018): a learned embedding per head for
  each distance 0..max_relative_distance (farther distances share the last one; bidirectional modules also
  learn negative distances), the term q_i · E_(i-j) added to the logits through the memory-efficient skew.
- "rope": rotary embeddings on q and k.
- "alibi": a per-head linear distance penalty with the standard slopes.
- "none": content only (the model then adds learned absolute positions).

The module serves as causal self-attention (the default), bidirectional self-attention (`causal=False`) and
cross-attention (`kv=` another sequence, with an optional key padding mask). Self-attention can decode one
token or a chunk at a time against a static `KVCache`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .config import POSITION_MODES
from .positions import RotaryEmbedding, alibi_bias, alibi_slopes, relative_logits

PositionMode = Literal["relative", "rope", "alibi", "none"]


class KVCache:
    """Keys and values of one self-attention layer, in buffers allocated once (gpt-fast style).

    `update` writes the new rows in place and returns views of everything written so far, so decoding a
    token never allocates a cache-sized tensor. Keys are stored after the rotary rotation, if any.
    """

    def __init__(self, batch_size: int, n_heads: int, max_len: int, head_dim: int, *,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        shape = (batch_size, n_heads, max_len, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def max_len(self) -> int:
        return self.keys.shape[2]

    def update(self, start_pos: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = start_pos + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions, asked to write up to {end}")
        if k.shape[0] != self.keys.shape[0]:
            raise ValueError(f"KV cache was made for batch size {self.keys.shape[0]}, got {k.shape[0]}")
        self.keys[:, :, start_pos:end] = k
        self.values[:, :, start_pos:end] = v
        return self.keys[:, :, :end], self.values[:, :, :end]


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, *, position: PositionMode = "relative",
                 max_relative_distance: int = 1023, causal: bool = True, kv_dim: int | None = None,
                 dropout: float = 0.0, bias: bool = True, rope_base: float = 10000.0) -> None:
        super().__init__()
        if position not in POSITION_MODES:
            raise ValueError(f"position must be one of {', '.join(POSITION_MODES)}; got {position!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if max_relative_distance < 0:
            raise ValueError(f"max_relative_distance must be >= 0, got {max_relative_distance}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.position, self.causal, self.dropout = position, causal, dropout
        self.max_relative_distance, self.rope_base = max_relative_distance, rope_base
        kv_dim = kv_dim or d_model
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(kv_dim, d_model, bias=bias)
        self.v_proj = nn.Linear(kv_dim, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        if position == "relative":
            n_distances = max_relative_distance + 1 if causal else 2 * max_relative_distance + 1
            self.relative_embeddings = nn.Parameter(
                torch.randn(n_heads, n_distances, self.head_dim) * self.head_dim**-0.5)
        elif position == "rope":
            self.rotary = RotaryEmbedding(self.head_dim, base=rope_base)
        elif position == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(n_heads), persistent=False)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def forward(self, x: torch.Tensor, kv: torch.Tensor | None = None, *,
                key_padding_mask: torch.Tensor | None = None, kv_cache: KVCache | None = None,
                start_pos: int = 0) -> torch.Tensor:
        """x: (B, Tq, d_model) queries; kv: (B, Tk, kv_dim) for cross-attention, else x itself.

        key_padding_mask: (B, Tk) bool, True where a key is padding (the `torch.nn.MultiheadAttention`
        convention). With `kv_cache`, x holds the tokens at positions start_pos .. start_pos + Tq - 1 and
        attends to every cached position before them.
        """
        if kv is not None and kv_cache is not None:
            raise ValueError("a KV cache is for self-attention; cross-attention keys need no cache")
        if kv is not None and self.causal:
            raise ValueError("cross-attention is not causal: build the module with causal=False")
        source = x if kv is None else kv
        q = self._split_heads(self.q_proj(x))  # (B, H, Tq, D)
        k = self._split_heads(self.k_proj(source))  # (B, H, Tk, D)
        v = self._split_heads(self.v_proj(source))
        first_query_pos = start_pos if kv_cache is not None else 0
        if self.position == "rope":
            q = self.rotary(q, first_query_pos)
            k = self.rotary(k, first_query_pos)
        if kv_cache is not None:
            k, v = kv_cache.update(start_pos, k, v)
        bias = self._logit_bias(q, k.shape[2], first_query_pos, key_padding_mask)
        is_causal = bias is None and self.causal and first_query_pos == 0 and q.shape[2] == k.shape[2]
        if bias is None and self.causal and not is_causal:
            bias = self._visible(q.shape[2], k.shape[2], first_query_pos, None, q.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=is_causal,
                                             dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.d_model)  # concatenate the heads
        return self.out_proj(out)

    def _visible(self, n_queries: int, n_keys: int, first_query_pos: int,
                 key_padding_mask: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
        """Boolean (B|1, 1, Tq, Tk) mask of the keys each query may attend to, or None when all of them."""
        visible = None
        if self.causal:
            visible = torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril(first_query_pos)
            visible = visible[None, None]
        if key_padding_mask is not None:
            keep = ~key_padding_mask.to(device=device, dtype=torch.bool)[:, None, None, :]
            visible = keep if visible is None else visible & keep
        return visible

    def _logit_bias(self, q: torch.Tensor, n_keys: int, first_query_pos: int,
                    key_padding_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Everything added to the scaled logits, folded into one tensor for scaled_dot_product_attention:
        the position term and -inf where a key is hidden. None when plain (causal) attention suffices."""
        n_queries = q.shape[2]
        if self.position == "relative":
            scores = relative_logits(q, self.relative_embeddings, n_keys=n_keys,
                                     first_query_pos=first_query_pos, causal=self.causal)
            term = scores * self.head_dim**-0.5  # Huang et al.: (QKᵀ + S_rel) / sqrt(D)
        elif self.position == "alibi":
            term = alibi_bias(self.alibi_slopes, n_queries=n_queries, n_keys=n_keys,
                              first_query_pos=first_query_pos).to(q.dtype)[None]
        else:
            term = None
        if term is None and key_padding_mask is None:
            return None  # rope / none: the fused kernels apply directly
        visible = self._visible(n_queries, n_keys, first_query_pos, key_padding_mask, q.device)
        if term is None:
            return visible
        return term if visible is None else term.masked_fill(~visible, float("-inf"))
