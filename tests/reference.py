"""Plain, slow reference attention, written independently of musicmha.nn.positions: explicit per-head loops,
an explicit (Tq, Tk, D) relative tensor for "relative" (Shaw et al. 2018), complex-number rotations for
"rope", an explicit distance matrix for "alibi", and a hand-written softmax."""

from __future__ import annotations

import math

import numpy as np

import torch


def naive_alibi_slopes(n_heads: int) -> list[float]:
    # Press et al., reference code: for n a power of two, slopes are (2^(-8/n))^k, k = 1..n.
    def pow2(n: int) -> list[float]:
        return [2.0 ** (-8.0 * k / n) for k in range(1, n + 1)]

    if n_heads & (n_heads - 1) == 0:
        return pow2(n_heads)
    closest = 2 ** int(math.log2(n_heads))
    return pow2(closest) + pow2(2 * closest)[0::2][: n_heads - closest]


def naive_rope(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """x: (T, D). Pairs (x[k], x[k + D/2]) rotated by angle pos * base^(-2k/D), as complex numbers."""
    half = x.shape[-1] // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float64) * 2 / x.shape[-1])
    angle = positions.to(torch.float64)[:, None] * freqs[None, :]
    z = torch.complex(x[:, :half].double(), x[:, half:].double()) * torch.polar(torch.ones_like(angle), angle)
    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)


def naive_attention(mha, x: torch.Tensor, kv: torch.Tensor | None = None,
                    key_padding_mask: torch.Tensor | None = None, first_query_pos: int = 0,
                    past_kv_input: torch.Tensor | None = None) -> torch.Tensor:
    """Reference output of musicmha.MultiHeadAttention `mha` (same weights) for inputs x (B, Tq, C).

    past_kv_input: for cached decoding, the earlier inputs (B, first_query_pos, C) whose keys are cached.
    """
    source = x if kv is None else kv
    if past_kv_input is not None:
        source = torch.cat([past_kv_input, x], dim=1)
    batch, n_q, _ = x.shape
    n_k = source.shape[1]
    heads, dim = mha.n_heads, mha.head_dim
    q_all = mha.q_proj(x)
    k_all = mha.k_proj(source)
    v_all = mha.v_proj(source)
    outputs = []
    for b in range(batch):
        head_outputs = []
        for h in range(heads):
            cols = slice(h * dim, (h + 1) * dim)
            q, k, v = q_all[b, :, cols], k_all[b, :, cols], v_all[b, :, cols]
            q_pos = torch.arange(n_q) + first_query_pos
            k_pos = torch.arange(n_k)
            if mha.position == "rope":
                q, k = naive_rope(q, q_pos, mha.rope_base), naive_rope(k, k_pos, mha.rope_base)
            logits = torch.zeros(n_q, n_k, dtype=x.dtype)
            for i in range(n_q):
                for j in range(n_k):
                    logits[i, j] = (q[i] * k[j]).sum()
            distance = q_pos[:, None] - k_pos[None, :]  # (Tq, Tk)
            if mha.position == "relative":
                table = mha.scheme.relative_embeddings[h]  # (N, D)
                back = 0 if mha.causal else (table.shape[0] - 1) // 2
                index = distance.clamp(-back, table.shape[0] - 1 - back) + back
                rel = table[index]  # (Tq, Tk, D): the O(L^2 D) tensor of Shaw et al.
                logits = logits + (q[:, None, :] * rel).sum(-1)
            logits = logits / math.sqrt(dim)
            if mha.position == "alibi":
                logits = logits - naive_alibi_slopes(heads)[h] * distance.abs().to(x.dtype)
            hidden = torch.zeros(n_q, n_k, dtype=torch.bool)
            if mha.causal:
                hidden |= distance < 0
            if key_padding_mask is not None:
                hidden |= key_padding_mask[b][None, :].bool()
            logits = logits.masked_fill(hidden, float("-inf"))
            weights = torch.exp(logits - logits.max(-1, keepdim=True).values)
            weights = weights / weights.sum(-1, keepdim=True)
            head_outputs.append(weights @ v)
        outputs.append(torch.cat(head_outputs, dim=-1))
    return mha.out_proj(torch.stack(outputs))


def naive_copy(seq: list[int], vocab: int, max_match: int) -> tuple[np.ndarray, np.ndarray]:
    """For each position i: the longest m (<= max_match) such that seq[i-m+1..i] == seq[c-m+1..c] for some
    c < i, and the normalized counts of seq[c+1] over those c."""
    q, lengths = np.zeros((len(seq), vocab)), np.zeros(len(seq), dtype=int)
    for i in range(len(seq)):
        runs = {}
        for c in range(i):
            m = 0
            while m < max_match and c - m >= 0 and seq[i - m] == seq[c - m]:
                m += 1
            runs[c] = m
        best = max(runs.values(), default=0)
        lengths[i] = best
        if best > 0:
            for c, m in runs.items():
                if m == best:
                    q[i, seq[c + 1]] += 1
            q[i] /= q[i].sum()
    return q, lengths
