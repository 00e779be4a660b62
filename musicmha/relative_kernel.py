"""Fast causal relative attention: a blocked kernel with its own backward, and a FlexAttention path.

Both compute softmax((Q Kᵀ + S_rel) · scale) V with S_rel[i, j] = q_i · E[clip(i - j)], causal, exactly what
`MultiHeadAttention` computes through `scaled_dot_product_attention` with a float bias ("sdpa" backend).
That generic path is slow where it matters: a bias that needs a gradient sends SDPA to its math
implementation (full L×L in both directions, masked half included), and autograd's backward of the strided
skew is a generic `as_strided` scatter.

"blocked" (any device; the CPU default) walks the queries in blocks of `block_size` rows. A query block
[a, b) only needs keys 0..b-1 and distances 0..b-1, so the masked upper triangle is never computed (about
half the FLOPs at long lengths). Inside a block the relative term is one matmul against the distance table
read backwards, skewed through a strided view of a padded buffer; the backward "unskews" by writing the
logit gradient through the same view into a zeroed buffer (the view never overlaps itself, so that is
exact). Probabilities are kept from the forward rather than recomputed, trading memory
(B·H·L²/2 values) for three matmuls per block.

"flex" (CUDA): torch's FlexAttention with a `score_mod` that gathers from the precomputed Q·Eᵀ with
clamped distances and a causal `BlockMask` cached per length.
"""

from __future__ import annotations

import functools

import torch


def reversed_distance_table(rel_emb: torch.Tensor, length: int) -> torch.Tensor:
    """(H, length, D) table whose row t holds the embedding of distance length-1-t (clipped to the table).

    Built with autograd so the gradient reaches the shared clipped row of `rel_emb` (H, R+1, D)."""
    distances = torch.arange(length - 1, -1, -1, device=rel_emb.device).clamp(max=rel_emb.shape[1] - 1)
    return rel_emb[:, distances]


def _skew_view(buffer: torch.Tensor, n_keys: int) -> torch.Tensor:
    """View of a (B, H, c, W) buffer, W = n_keys + c, with [r, j] = buffer[r, j + c - 1 - r].

    Row r of the buffer holds q_(a+r) · E(b-1-t) in column t, so query a+r and key j (distance a+r-j) sit
    at column t = j + (b-1-a) - r = j + c - 1 - r. Row stride W - 1 does that shift; since W - 1 >= n_keys,
    no two (r, j) share an element, which makes the transposed write in the backward exact. The entries
    that land in the last c columns (t >= b) are exactly the future keys j > a + r, which the caller masks."""
    batch, heads, rows, width = buffer.shape
    return buffer.as_strided((batch, heads, rows, n_keys),
                             (heads * rows * width, rows * width, width - 1, 1),
                             buffer.storage_offset() + rows - 1)


@functools.lru_cache(maxsize=32)
def _future_mask(rows: int, device: str) -> torch.Tensor:
    """True above the diagonal of the (rows, rows) square where a block's queries meet their own keys."""
    return torch.ones(rows, rows, dtype=torch.bool, device=device).triu(1)


def _blocks(length: int, block_size: int):
    for index, a in enumerate(range(0, length, block_size)):
        b = min(a + block_size, length)
        yield index, a, b, b - a


class _BlockedCausalRelative(torch.autograd.Function):
    """Inputs: q, k, v (B, H, L, D); e_pad (H, L + block_size, D), the reversed distance table followed by
    zero rows, so that one matmul per block yields the padded buffer `_skew_view` reads from."""

    @staticmethod
    def forward(ctx, q, k, v, e_pad, scale: float, dropout_p: float, block_size: int):  # type: ignore[override]
        length = q.shape[2]
        q_scaled = q * scale  # scaling q once scales both logit terms, instead of an L x L pass per block
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
        saved_probs, saved_keep = [], []
        softmax_dtype = torch.promote_types(q.dtype, torch.float32)  # bf16/fp16 logits: softmax in fp32
        for _, a, b, rows in _blocks(length, block_size):
            q_blk = q_scaled[:, :, a:b]  # (B, H, c, D)
            scores = torch.matmul(q_blk, k[:, :, :b].transpose(-1, -2))  # (B, H, c, b)
            relative = torch.matmul(q_blk, e_pad[:, length - b:length + rows].transpose(-1, -2))  # (B, H, c, b+c)
            scores += _skew_view(relative, b)
            scores[..., a:].masked_fill_(_future_mask(rows, str(q.device)), float("-inf"))
            probs = torch.softmax(scores, dim=-1, dtype=softmax_dtype).to(q.dtype)
            dropped = probs
            if dropout_p > 0.0:
                keep = torch.rand_like(probs) >= dropout_p
                dropped = probs * keep / (1.0 - dropout_p)
                saved_keep.append(keep)
            out[:, :, a:b] = torch.matmul(dropped, v[:, :, :b])
            saved_probs.append(probs)
        ctx.save_for_backward(q_scaled, k, v, e_pad, out)
        ctx.probs, ctx.keep = saved_probs, saved_keep
        ctx.scale, ctx.dropout_p, ctx.block_size = scale, dropout_p, block_size
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q_scaled, k, v, e_pad, out = ctx.saved_tensors
        length = q_scaled.shape[2]
        scale, dropout_p, block_size = ctx.scale, ctx.dropout_p, ctx.block_size
        grad_q = torch.empty_like(q_scaled, memory_format=torch.contiguous_format)
        grad_k = torch.zeros_like(k, memory_format=torch.contiguous_format)
        grad_v = torch.zeros_like(v, memory_format=torch.contiguous_format)
        grad_e = torch.zeros_like(e_pad, memory_format=torch.contiguous_format)
        # softmax backward needs sum_j P_ij dP_ij, which equals dO_i · O_i (with or without dropout)
        row_dot = (grad_out * out).sum(dim=-1, keepdim=True)  # (B, H, L, 1)
        for index, a, b, rows in _blocks(length, block_size):
            probs, grad_o = ctx.probs[index], grad_out[:, :, a:b]
            grad_probs = torch.matmul(grad_o, v[:, :, :b].transpose(-1, -2))  # (B, H, c, b)
            if dropout_p > 0.0:
                keep = ctx.keep[index]
                grad_v[:, :, :b] += torch.matmul((probs * keep).transpose(-1, -2), grad_o) / (1.0 - dropout_p)
                grad_probs.mul_(keep).div_(1.0 - dropout_p)
            else:
                grad_v[:, :, :b] += torch.matmul(probs.transpose(-1, -2), grad_o)
            grad_scores = grad_probs.sub_(row_dot[:, :, a:b]).mul_(probs)  # gradient of the scaled logits
            q_blk = q_scaled[:, :, a:b]
            grad_k[:, :, :b] += torch.matmul(grad_scores.transpose(-1, -2), q_blk)
            # unskew: write the logit gradient back through the same view. The view leaves a triangle of the
            # first c columns and one of the last c unwritten, so only those need zeroing.
            grad_relative = grad_scores.new_empty(grad_scores.shape[:-1] + (b + rows,))
            grad_relative[..., :rows].zero_()
            grad_relative[..., b:].zero_()
            _skew_view(grad_relative, b).copy_(grad_scores)
            e_blk = e_pad[:, length - b:length + rows]
            grad_q_blk = torch.matmul(grad_scores, k[:, :, :b])
            grad_q_blk += torch.matmul(grad_relative, e_blk)  # its last c columns meet the zero rows
            grad_q[:, :, a:b] = grad_q_blk * scale
            grad_e[:, length - b:length + rows] += torch.matmul(grad_relative.transpose(-1, -2), q_blk).sum(0)
        return grad_q, grad_k, grad_v, grad_e, None, None, None


def blocked_causal_relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_emb: torch.Tensor,
                                      *, scale: float, dropout_p: float = 0.0,
                                      block_size: int = 128) -> torch.Tensor:
    """Causal self-attention with Music Transformer relative logits; q, k, v (B, H, L, D) -> (B, H, L, D).

    rel_emb is the (H, R+1, D) table for distances 0..R (farther distances use row R)."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    e_rev = reversed_distance_table(rel_emb, q.shape[2]).to(q.dtype)
    e_pad = torch.cat([e_rev, e_rev.new_zeros(e_rev.shape[0], block_size, e_rev.shape[2])], dim=1)
    return _BlockedCausalRelative.apply(q, k, v, e_pad, scale, dropout_p, block_size)


@functools.lru_cache(maxsize=8)
def _flex_causal_block_mask(length: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, None, None, length, length,
                             device=device)


@functools.lru_cache(maxsize=1)
def _compiled_flex_attention():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)  # eager FlexAttention is an unfused reference


def flex_causal_relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_emb: torch.Tensor,
                                   *, scale: float) -> torch.Tensor:
    """The same attention through FlexAttention: the relative term is gathered per score from Q·Eᵀ
    (B, H, L, R+1), so no skew and no L×L bias tensor; the causal BlockMask skips the masked tiles.
    FlexAttention's backward needs CUDA (on the CPU it runs forward-only, used by the tests)."""
    from torch.nn.attention.flex_attention import flex_attention

    attention = _compiled_flex_attention() if q.is_cuda else flex_attention
    max_distance = rel_emb.shape[1] - 1
    per_distance = torch.matmul(q, rel_emb.to(q.dtype).transpose(-1, -2))  # (B, H, L, R+1)

    def add_relative(score, b, h, q_idx, kv_idx):
        distance = (q_idx - kv_idx).clamp(0, max_distance)
        return score + per_distance[b, h, q_idx, distance] * scale

    block_mask = _flex_causal_block_mask(q.shape[2], str(q.device))
    return attention(q, k, v, score_mod=add_relative, block_mask=block_mask, scale=scale)
