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
(B·H·L²/2 values) for three matmuls per block; only when a gradient is to come. The backward of bf16/fp16
inputs computes and accumulates in fp32.

"flex" (CUDA): torch's FlexAttention with a `score_mod` that gathers from the precomputed Q·Eᵀ with
clamped distances and a causal `BlockMask` cached per length.
"""

from __future__ import annotations

import functools

import torch

from musicmha.nn.skew import skew, unskew


def reversed_distance_table(rel_emb: torch.Tensor, length: int) -> torch.Tensor:
    """(H, length, D) table whose row t holds the embedding of distance length-1-t (clipped to the table).

    Built with autograd so the gradient reaches the shared clipped row of `rel_emb` (H, R+1, D)."""
    distances = torch.arange(length - 1, -1, -1, device=rel_emb.device).clamp(max=rel_emb.shape[1] - 1)
    return rel_emb[:, distances]


@functools.lru_cache(maxsize=32)
def _cached_future_mask(rows: int, device: str) -> torch.Tensor:
    return torch.ones(rows, rows, dtype=torch.bool, device=device).triu(1)


def _future_mask(rows: int, device: torch.device) -> torch.Tensor:
    """True above the diagonal of the (rows, rows) square where a block's queries meet their own keys.
    Eager calls reuse one tensor per size; under torch.compile it is built in the graph (a constant that
    the compiler folds), since an lru_cache call is opaque to dynamo."""
    if torch.compiler.is_compiling():
        return torch.ones(rows, rows, dtype=torch.bool, device=device).triu(1)
    return _cached_future_mask(rows, str(device))


def _blocks(length: int, block_size: int):
    for index, a in enumerate(range(0, length, block_size)):
        b = min(a + block_size, length)
        yield index, a, b, b - a


# Without a gradient to come, a block's score rows are computed for a few (sample, head) pairs at a time, so
# that the transient scores stay under this many elements (4 MiB in fp32) at any length: at L = 4,096 one
# pair's block is already 0.5 M. Each pair's matmuls are the same as in one batched call, so the output is too.
_NO_GRAD_SCORE_ELEMENTS = 2**20


def _attend_block(q_blk: torch.Tensor, k: torch.Tensor, v: torch.Tensor, e_blk: torch.Tensor, a: int,
                  dropout_p: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Query rows a..b-1 (q_blk already scaled) against keys 0..b-1: (out rows, probabilities, dropout mask)."""
    rows = q_blk.shape[2]
    b = a + rows
    scores = torch.matmul(q_blk, k[:, :, :b].transpose(-1, -2))  # (B, H, c, b)
    relative = torch.matmul(q_blk, e_blk.transpose(-1, -2))  # (B, H, c, b+c)
    # Row r of `relative` holds q_(a+r) · E(b-1-t) in column t, so query a+r and key j (distance a+r-j) sit at
    # column j + c - 1 - r: the skew. Entries read from the zero rows (t >= b) are the future keys, masked below.
    scores += skew(relative, b)
    del relative
    scores[..., a:].masked_fill_(_future_mask(rows, q_blk.device), float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    del scores
    keep, dropped = None, probs
    if dropout_p > 0.0:
        keep = torch.rand_like(probs) >= dropout_p
        dropped = probs * keep / (1.0 - dropout_p)
    return torch.matmul(dropped, v[:, :, :b]), probs, keep


def _blocked_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, e_pad: torch.Tensor, scale: float,
                     dropout_p: float, block_size: int,
                     saved: tuple[list[torch.Tensor], list[torch.Tensor]] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, q * scale), both in the compute dtype: fp32 for bf16/fp16 inputs (the logits, softmax and P V
    of SDPA's math path are fp32 too; logits rounded to bf16 cost more gradient accuracy than the bf16
    inputs themselves), the input dtype otherwise. With `saved`, each block's probabilities (in the input
    dtype: bf16 training keeps bf16 ones, as much memory as before) and dropout masks are appended to it for
    the backward; without, they die with their block, and the blocks go a few heads at a time."""
    with torch.autocast(q.device.type, enabled=False):  # autocast would turn the fp32 matmuls back to bf16
        dtype = q.dtype
        compute = torch.promote_types(dtype, torch.float32)
        q, k, v, e_pad = (t.to(compute) for t in (q, k, v, e_pad))  # no-ops for fp32 and fp64
        length, (batch, heads) = q.shape[2], q.shape[:2]
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
        if saved is not None:
            q_scaled = q * scale  # scaling q once scales both logit terms, instead of an L x L pass per block
            for _, a, b, rows in _blocks(length, block_size):
                e_blk = e_pad[:, length - b:length + rows]
                out[:, :, a:b], probs, keep = _attend_block(q_scaled[:, :, a:b], k, v, e_blk, a, dropout_p)
                saved[0].append(probs.to(dtype))
                if keep is not None:
                    saved[1].append(keep)
            return out, q_scaled
        for _, a, b, rows in _blocks(length, block_size):
            group = max(1, _NO_GRAD_SCORE_ELEMENTS // (rows * (b + rows)))  # heads per chunk, at most
            group = -(-heads // -(-heads // group))  # as even as the heads allow: 8 heads by 7 go 4 + 4, not 7 + 1
            if dropout_p > 0.0 or group >= batch * heads:  # one chunk: the same random draws as with a gradient
                chunks = [(slice(None), slice(None))]
            else:
                chunks = [(slice(i, i + 1), slice(h, h + group)) for i in range(batch) for h in range(0, heads, group)]
            for samples, head in chunks:
                q_blk = q[samples, head, a:b] * scale  # elementwise: the same values as q * scale
                out[samples, head, a:b] = _attend_block(q_blk, k[samples, head], v[samples, head],
                                                        e_pad[head, length - b:length + rows], a, dropout_p)[0]
        return out, q


class _BlockedCausalRelative(torch.autograd.Function):
    """Inputs: q, k, v (B, H, L, D); e_pad (H, L + block_size, D), the reversed distance table followed by
    zero rows, so that one matmul per block yields the padded buffer `skew` reads from."""

    @staticmethod
    def forward(ctx, q, k, v, e_pad, scale: float, dropout_p: float, block_size: int):  # type: ignore[override]
        saved_probs: list[torch.Tensor] = []
        saved_keep: list[torch.Tensor] = []
        out, q_scaled = _blocked_forward(q, k, v, e_pad, scale, dropout_p, block_size, (saved_probs, saved_keep))
        # Everything through save_for_backward (not lists on ctx): torch.compile traces it as one graph, and
        # autograd checks the saved tensors were not modified in place. q_scaled and out: compute dtype.
        ctx.save_for_backward(q_scaled, k, v, e_pad, out, *saved_probs, *saved_keep)
        ctx.n_blocks = len(saved_probs)
        ctx.dtypes = (q.dtype, k.dtype, v.dtype, e_pad.dtype)
        ctx.scale, ctx.dropout_p, ctx.block_size = scale, dropout_p, block_size
        return out.to(q.dtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        with torch.autocast(grad_out.device.type, enabled=False):
            return _BlockedCausalRelative._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        # bf16/fp16 inputs: every product and every sum over blocks in fp32, one rounding at the end. In
        # bf16, dP - rowsum(dO * O) cancels most of its bits and dK, dV, dE add up L / block_size terms.
        # The upcast is exact and, under TF32, costs tensor-core matmuls all the same (bf16 fits in TF32).
        # For fp32 (and fp64) every `.to(acc)` below returns its input: that path is unchanged.
        dtypes = ctx.dtypes
        acc = torch.promote_types(dtypes[0], torch.float32)
        saved = ctx.saved_tensors
        q_scaled, k, v, e_pad, out = (t.to(acc) for t in saved[:5])
        all_probs, all_keep = saved[5:5 + ctx.n_blocks], saved[5 + ctx.n_blocks:]
        grad_out = grad_out.to(acc)
        length = q_scaled.shape[2]
        scale, dropout_p, block_size = ctx.scale, ctx.dropout_p, ctx.block_size
        grad_q = torch.empty_like(q_scaled, memory_format=torch.contiguous_format)
        grad_k = torch.zeros_like(k, memory_format=torch.contiguous_format)
        grad_v = torch.zeros_like(v, memory_format=torch.contiguous_format)
        grad_e = torch.zeros_like(e_pad, memory_format=torch.contiguous_format)
        # softmax backward needs sum_j P_ij dP_ij, which equals dO_i · O_i (with or without dropout)
        row_dot = (grad_out * out).sum(dim=-1, keepdim=True)  # (B, H, L, 1)
        for index, a, b, rows in _blocks(length, block_size):
            probs, grad_o = all_probs[index].to(acc), grad_out[:, :, a:b]
            grad_probs = torch.matmul(grad_o, v[:, :, :b].transpose(-1, -2))  # (B, H, c, b)
            if dropout_p > 0.0:
                keep = all_keep[index]
                grad_v[:, :, :b] += torch.matmul((probs * keep).transpose(-1, -2), grad_o) / (1.0 - dropout_p)
                grad_probs.mul_(keep).div_(1.0 - dropout_p)
            else:
                grad_v[:, :, :b] += torch.matmul(probs.transpose(-1, -2), grad_o)
            grad_scores = grad_probs.sub_(row_dot[:, :, a:b]).mul_(probs)  # gradient of the scaled logits
            q_blk = q_scaled[:, :, a:b]
            grad_k[:, :, :b] += torch.matmul(grad_scores.transpose(-1, -2), q_blk)
            # the adjoint of the skew: the logit gradient written back through the same view
            grad_relative = unskew(grad_scores, b + rows)
            e_blk = e_pad[:, length - b:length + rows]
            grad_q_blk = torch.matmul(grad_scores, k[:, :, :b])
            grad_q_blk += torch.matmul(grad_relative, e_blk)  # its last c columns meet the zero rows
            grad_q[:, :, a:b] = grad_q_blk * scale
            grad_e[:, length - b:length + rows] += torch.matmul(grad_relative.transpose(-1, -2), q_blk).sum(0)
        grads = (grad.to(dtype) for grad, dtype in zip((grad_q, grad_k, grad_v, grad_e), dtypes))
        return (*grads, None, None, None)


def blocked_causal_relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_emb: torch.Tensor,
                                      *, scale: float, dropout_p: float = 0.0,
                                      block_size: int = 128) -> torch.Tensor:
    """Causal self-attention with Music Transformer relative logits; q, k, v (B, H, L, D) -> (B, H, L, D).

    rel_emb is the (H, R+1, D) table for distances 0..R (farther distances use row R). Without a gradient
    to compute (no_grad, inference mode, or no input that requires one), the probabilities are not kept:
    evaluation and prefill then need one block of them at a time, not B·H·L²/2 values."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    e_pad = _padded_table(rel_emb, q.shape[2], block_size, q.dtype)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, e_pad))):
        return _blocked_forward(q, k, v, e_pad, scale, dropout_p, block_size, None)[0].to(q.dtype)
    return _BlockedCausalRelative.apply(q, k, v, e_pad, scale, dropout_p, block_size)


def _padded_table(rel_emb: torch.Tensor, length: int, block_size: int, dtype: torch.dtype) -> torch.Tensor:
    """The reversed distance table followed by block_size zero rows (the intermediate dies here)."""
    e_rev = reversed_distance_table(rel_emb, length).to(dtype)
    return torch.cat([e_rev, e_rev.new_zeros(e_rev.shape[0], block_size, e_rev.shape[2])], dim=1)


@functools.lru_cache(maxsize=8)
def _flex_causal_block_mask(length: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, None, None, length, length,
                             device=device)


# The compiler backend for FlexAttention ("inductor" fuses it; tests count recompilations with "eager").
FLEX_COMPILE_BACKEND = "inductor"


@functools.lru_cache(maxsize=2)
def _compiled_flex_attention(backend: str):
    from torch.nn.attention.flex_attention import flex_attention

    # dynamic=None: the first (batch, length) compiles a static kernel, a different one recompiles with the
    # sizes symbolic, and a handful of shapes later (batch 1 is always specialized, and the block mask's tile
    # count once) nothing compiles again. dynamic=False compiled once per shape until dynamo's recompile
    # limit, then silently ran eager flex: a full L x L score matrix (measured here: 9 graphs for 9 shapes).
    return torch.compile(flex_attention, dynamic=None, backend=backend)


def flex_causal_relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_emb: torch.Tensor,
                                   *, scale: float, compiled: bool | None = None) -> torch.Tensor:
    """The same attention through FlexAttention: the relative term is gathered per score from Q·Eᵀ
    (B, H, L, R+1), so no skew and no L×L bias tensor; the causal BlockMask skips the masked tiles.
    FlexAttention has no attention dropout, and its backward needs CUDA (on the CPU it runs forward only).
    compiled: None compiles on CUDA only (eager FlexAttention is an unfused reference)."""
    from torch.nn.attention.flex_attention import flex_attention

    if compiled is None:
        compiled = q.is_cuda
    attention = _compiled_flex_attention(FLEX_COMPILE_BACKEND) if compiled else flex_attention
    max_distance = rel_emb.shape[1] - 1
    per_distance = torch.matmul(q, rel_emb.to(q.dtype).transpose(-1, -2))  # (B, H, L, R+1)

    def add_relative(score, b, h, q_idx, kv_idx):
        distance = (q_idx - kv_idx).clamp(0, max_distance)
        return score + per_distance[b, h, q_idx, distance] * scale

    block_mask = _flex_causal_block_mask(q.shape[2], str(q.device))
    return attention(q, k, v, score_mod=add_relative, block_mask=block_mask, scale=scale)
