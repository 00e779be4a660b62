"""Multi-head attention with one interface for every position scheme.

Per-head query/key/value projections, scaled dot-product attention per head, concatenation of the heads and
an output projection (Vaswani et al. 2017). `position=` names the position scheme, a module of
`musicmha.nn.positions` (`self.scheme`) that this one asks for rotated queries and keys, a logit bias, or the
whole causal attention through its own kernel, the same way whatever the scheme.

The module serves as causal self-attention (the default), bidirectional self-attention (`causal=False`) and
cross-attention (`kv=` another sequence, with an optional key padding mask). Self-attention can decode one
token or a chunk at a time against a static `KVCache`.

Backends (`backend=`): "sdpa" folds every position term and mask into one additive bias for
`scaled_dot_product_attention` (schemes without a bias get its fused causal kernels directly); "blocked" and
"flex" are the scheme's own kernels (`has_fast_kernel`: the causal relative kernels of `relative_kernel`).
"auto" picks "blocked" on the CPU (and "sdpa" on CUDA, see `auto_backend`) for causal self-attention over a
whole sequence (training, prefill) and "sdpa" for everything else (decoding one row needs no skew; see
`musicmha.nn.skew.relative_rows`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from musicmha.nn.config import ATTENTION_BACKENDS, MAX_PREVIOUS_TOKENS
from musicmha.nn.positions import build_position_scheme, position_scheme_type


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
        # the last tokens each row has fed, oldest first (-1: none), for a model that reads the tokens before
        # each position (ModelConfig.previous_tokens)
        self.last_tokens = torch.full((batch_size, MAX_PREVIOUS_TOKENS), -1, dtype=torch.long, device=device)

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
    def __init__(self, d_model: int, n_heads: int, *, position: str = "relative",
                 max_relative_distance: int = 1023, causal: bool = True, kv_dim: int | None = None,
                 dropout: float = 0.0, bias: bool = True, rope_base: float = 10000.0,
                 backend: str = "auto", block_size: int = 128, relative_buckets: int = 0) -> None:
        super().__init__()
        position_scheme_type(position)  # an unknown name fails first, with the list of schemes
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(ATTENTION_BACKENDS)}; got {backend!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if max_relative_distance < 0:
            raise ValueError(f"max_relative_distance must be >= 0, got {max_relative_distance}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.position, self.causal, self.dropout = position, causal, dropout
        self.max_relative_distance, self.rope_base = max_relative_distance, rope_base
        self.backend, self.block_size = backend, block_size
        self._mask_cache: dict[tuple, torch.Tensor] = {}  # causal masks and constant biases, reused per shape
        kv_dim = kv_dim or d_model
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(kv_dim, d_model, bias=bias)
        self.v_proj = nn.Linear(kv_dim, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        # after the projections: the relative table's random init comes after theirs, as it always has
        self.scheme = build_position_scheme(position, n_heads=n_heads, head_dim=self.head_dim, causal=causal,
                                            max_relative_distance=max_relative_distance, rope_base=rope_base,
                                            relative_buckets=relative_buckets)
        # Checkpoints written before the schemes were modules keep the scheme's tensors under this module's
        # own prefix ("blocks.0.attn.relative_embeddings"); they still load. New ones are saved under their real
        # path ("blocks.0.attn.scheme.relative_embeddings"): FSDP2's state dict (torch.distributed.checkpoint,
        # which accelerate's get_state_dict and save_state use) finds each tensor by walking its key's
        # attributes, so a renamed key fails there (tests/training/test_fsdp2_cpu.py).
        if hasattr(nn.Module, "register_load_state_dict_pre_hook"):  # torch >= 2.5
            self.register_load_state_dict_pre_hook(_load_scheme_flat)
        else:
            self._register_load_state_dict_pre_hook(_load_scheme_flat, with_module=True)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        super()._apply(fn, recurse)
        self._mask_cache.clear()  # cached masks and biases live on the old device or dtype
        return self

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
        q = self.scheme.rotate(q, first_query_pos)
        k = self.scheme.rotate(k, first_query_pos)
        if kv_cache is not None:
            k, v = kv_cache.update(start_pos, k, v)
        out = self.attend(q, k, v, first_query_pos=first_query_pos, key_padding_mask=key_padding_mask)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.d_model)  # concatenate the heads
        return self.out_proj(out)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, first_query_pos: int = 0,
               key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention core on split heads, q (B, H, Tq, D) and k, v (B, H, Tk, D), rotary already applied:
        position term, mask, softmax and the weighted sum of values, through the chosen backend."""
        dropout_p = self.dropout if self.training else 0.0
        backend = self.resolve_backend(q, k, first_query_pos, key_padding_mask)
        if backend != "sdpa":
            if backend == "flex" and dropout_p > 0.0:  # FlexAttention has no dropout; never drop it silently
                raise ValueError(f"attention_backend 'flex' has no attention dropout (dropout={self.dropout}): "
                                 "train it with dropout 0, or use the 'blocked' or 'sdpa' backend")
            return self.scheme.fast_attention(q, k, v, backend=backend, scale=self.head_dim**-0.5,
                                              dropout_p=dropout_p, block_size=self.block_size)
        bias = self._logit_bias(q, k.shape[2], first_query_pos, key_padding_mask)
        is_causal = bias is None and self.causal and first_query_pos == 0 and q.shape[2] == k.shape[2]
        if bias is None and self.causal and not is_causal:
            bias = self._visible(q.shape[2], k.shape[2], first_query_pos, None, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=is_causal, dropout_p=dropout_p)

    def resolve_backend(self, q: torch.Tensor, k: torch.Tensor, first_query_pos: int,
                        key_padding_mask: torch.Tensor | None) -> str:
        """The backend one call uses: a scheme's own kernels serve causal self-attention over a whole sequence
        from position 0 (training, evaluation, prefill); anything else takes "sdpa"."""
        whole_causal_sequence = (self.scheme.has_fast_kernel and self.causal and key_padding_mask is None
                                 and first_query_pos == 0 and q.shape[2] == k.shape[2])
        if not whole_causal_sequence or self.backend == "sdpa":
            return "sdpa"
        return auto_backend(q.device.type) if self.backend == "auto" else self.backend

    def _visible(self, n_queries: int, n_keys: int, first_query_pos: int,
                 key_padding_mask: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
        """Boolean (B|1, 1, Tq, Tk) mask of the keys each query may attend to, or None when all of them."""
        visible = None
        # one query at the newest position (decoding) sees every key: no mask to build
        if self.causal and not (n_queries == 1 and first_query_pos >= n_keys - 1):
            key = ("visible", n_queries, n_keys, first_query_pos, device)
            if key not in self._mask_cache:
                self._remember(key, torch.ones(n_queries, n_keys, dtype=torch.bool, device=device)
                               .tril(first_query_pos)[None, None])
            visible = self._mask_cache[key]
        if key_padding_mask is not None:
            keep = ~key_padding_mask.to(device=device, dtype=torch.bool)[:, None, None, :]
            visible = keep if visible is None else visible & keep
        return visible

    def _logit_bias(self, q: torch.Tensor, n_keys: int, first_query_pos: int,
                    key_padding_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Everything added to the scaled logits, folded into one tensor for scaled_dot_product_attention:
        the position term and -inf where a key is hidden. None when plain (causal) attention suffices."""
        n_queries = q.shape[2]
        # a bias that depends on the shape only (ALiBi): fold it with the causal mask once and reuse it
        reuse = self.scheme.constant_bias and key_padding_mask is None
        cache_key = ("bias", n_queries, n_keys, first_query_pos, q.device, q.dtype)
        if reuse and cache_key in self._mask_cache:
            return self._mask_cache[cache_key]
        term = self.scheme.logit_bias(q, n_keys=n_keys, first_query_pos=first_query_pos)
        if term is None and key_padding_mask is None:
            return None  # no bias, no padding: the fused kernels apply directly
        visible = self._visible(n_queries, n_keys, first_query_pos, key_padding_mask, q.device)
        if term is None:
            return visible
        folded = term if visible is None else term.masked_fill(~visible, float("-inf"))
        if reuse:
            self._remember(cache_key, folded)
        return folded

    def _remember(self, key: tuple, tensor: torch.Tensor) -> None:
        """Cache a shape-dependent constant; a small bound, since decoding creates a new shape every step."""
        if len(self._mask_cache) >= 16:
            self._mask_cache.pop(next(iter(self._mask_cache)))
        self._mask_cache[key] = tensor


def _load_scheme_flat(module: MultiHeadAttention, state_dict: dict, prefix: str, *args) -> None:
    """Load-state-dict pre-hook: an old checkpoint's flat keys for the scheme's tensors go back inside it."""
    for name in module.scheme.state_dict(keep_vars=True):
        if prefix + name in state_dict:
            state_dict[prefix + "scheme." + name] = state_dict.pop(prefix + name)


def auto_backend(device_type: str) -> str:
    """What "auto" runs for causal relative self-attention over a whole sequence on this device type.

    CPU: "blocked" (2-2.7x faster than SDPA's math path there; docs/benchmarks.md). CUDA: "sdpa": with a
    float bias that needs a gradient, CUDA SDPA takes its memory-efficient kernel, which returns the bias
    gradient in one fused pass, where "blocked" launches several small kernels per block from Python.
    Chosen from the kernels' documented support, not measured: no GPU has run this yet, and
    benchmarks/gpu_smoke.py times all three backends so the first GPU run can confirm or revise it."""
    return "sdpa" if device_type == "cuda" else "blocked"
