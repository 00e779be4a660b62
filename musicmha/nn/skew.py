"""The Music Transformer relative term q_i · E[clip(i - j)], computed without the (Tq, Tk, D) tensor.

Shaw et al. (2018) gather one embedding per (query, key) pair: O(L² D) memory. Huang et al. (2018)
multiply q by one embedding per *distance* instead (a buffer the size of the logits) and move each row into
place with the "skew": a pad-and-reshape that turns relative positions into absolute ones. Here the skew
is a strided view (`skew`), and its adjoint (`unskew`) writes a gradient back through the same view. This
module holds the only copy: `relative_logits` (the SDPA path) and the blocked kernel of `relative_kernel`
both read through it. `relative_rows` serves decoding, where a few rows need no skew at all.

Positions are absolute: query i sits at `first_query_pos + i`, key j at j.
"""

from __future__ import annotations

import torch


def skew(buffer: torch.Tensor, n_keys: int) -> torch.Tensor:
    """View of a (B, H, c, W) buffer whose column t holds distance d0 - t for every row (c rows, W >= n_keys + 1
    columns) as the (B, H, c, n_keys) logits: [r, j] = buffer[r, j + c - 1 - r].

    Row r sits one distance further from key j than row r - 1, so each row starts one column further left:
    row stride W - 1. Since W - 1 >= n_keys no two (r, j) share an element, which makes `unskew` (the
    adjoint) a plain copy. Where j + c - 1 - r >= W the view reads on into row r + 1 (W < n_keys + c - 1
    only): the callers' tables make those exactly keys in the query's future, which they mask.
    The buffer must be a fresh contiguous tensor (a matmul result, `new_empty`): its storage offset is
    taken as 0, because asking `storage_offset()` is a graph break under torch.compile.
    """
    batch, heads, rows, width = buffer.shape
    return buffer.as_strided((batch, heads, rows, n_keys),
                             (heads * rows * width, rows * width, width - 1, 1), rows - 1)


def unskew(logits: torch.Tensor, width: int) -> torch.Tensor:
    """The adjoint of `skew`: a (B, H, c, width) buffer holding `logits` (B, H, c, n_keys) where `skew` reads
    them and zero elsewhere. Row r of the view starts at column c-1-r and covers n_keys elements, so
    what it leaves lies in the first c and the last width - n_keys columns: only those need zeroing."""
    rows, n_keys = logits.shape[-2:]
    buffer = logits.new_empty(logits.shape[:-1] + (width,))
    buffer[..., :rows].zero_()
    buffer[..., n_keys:].zero_()
    skew(buffer, n_keys).copy_(logits)
    return buffer


class _SkewAndScale(torch.autograd.Function):
    """scale * skew(y), whose backward is scale * unskew(grad): autograd's own backward for `as_strided` is a
    generic scatter, many times slower than the forward."""

    @staticmethod
    def forward(ctx, y, n_keys: int, scale: float):  # type: ignore[override]
        ctx.width, ctx.scale = y.shape[-1], scale
        return skew(y, n_keys) * scale

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return unskew(grad * ctx.scale, ctx.width), None, None


def relative_logits(q: torch.Tensor, rel_emb: torch.Tensor, *, n_keys: int, first_query_pos: int,
                    causal: bool, scale: float = 1.0) -> torch.Tensor:
    """scale * S[b, h, i, j], S = q[b, h, i] · E[h, clip(i + first_query_pos - j)], through the skew.

    `rel_emb` is (H, N, D): causal tables hold distances 0..R (N = R + 1), bidirectional ones -R..R
    (N = 2R + 1). Y = q Eᵀ against one embedding per distance, column m holding distance d_max - m, has
    n_cols > n_keys columns, as `skew` needs. Entries whose distance is negative in the causal case read
    finite values (distance 0, or the next row's); the caller masks them.
    """
    n_queries = q.shape[2]
    n_dist = rel_emb.shape[1]
    back = 0 if causal else (n_dist - 1) // 2  # how many negative distances the table holds
    d_max = first_query_pos + n_queries - 1
    n_cols = max(d_max + 1, n_keys + 1) if causal else n_queries + n_keys
    distances = d_max - torch.arange(n_cols, device=q.device)
    index = distances.clamp(min=-back, max=n_dist - 1 - back) + back
    per_distance = rel_emb[:, index]  # (H, n_cols, D): one row per distance, never per (i, j) pair
    y = torch.matmul(q, per_distance.transpose(-1, -2)).contiguous()  # (B, H, Tq, n_cols), a fresh tensor
    return _SkewAndScale.apply(y, n_keys, scale)


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
