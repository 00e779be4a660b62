"""Copy targets: the tokens of a training window that follow an earlier exact repeat of what precedes them.

Why training weights them (issue 26, docs/induction.md): a transformer learns to copy (an induction
mechanism: find where the last few tokens occurred before, predict what followed) only once the targets that
reward copying carry enough of the gradient. On a synthetic task with a third of the targets copyable, a
d128 × 2 model with the loss on every token had not left the ln(vocab) plateau after 12M tokens, while the
same model with the loss on the copy targets alone copied after 5M (a phase change). Music is full of such
targets (repeated bars, verses, riffs), but the other targets drown their signal, and the shipped network
predicts a verbatim repeat no better than its first hearing. Weighting the targets where a copy is possible
(`copy_weights`) is the music-side version of "loss on the copy targets".

A target at position t is a *copy target* when the `min_match` tokens before it, rows[t - min_match : t],
occurred earlier in the same row (ending before t), inside one piece: a copying model has somewhere to look.
Whether what followed the earlier occurrence equals the target is not asked, so the weight rewards looking
back and judging, not copying blindly. Windows are numpy rows (inputs and targets in one, as
dataset.batch_for_step returns them); nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

DEFAULT_MIN_MATCH = 16  # tokens: about four REMI notes (program, pitch, velocity, duration each)
_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (Fibonacci hashing)


def copy_target_mask(rows: np.ndarray, min_match: int = DEFAULT_MIN_MATCH,
                     boundary_ids: Iterable[int] = ()) -> np.ndarray:
    """(B, N) bool for rows (B, N) of token ids: True at t when rows[b, t-min_match:t] occurred earlier in
    row b, ending before t, with no boundary token (BOS, EOS, ...) in either occurrence. Position t < min_match
    is never a copy target. A 64-bit rolling hash finds the repeats; a collision (odds ~N²/2⁶⁴ per row) could
    only add a weight, never change a token."""
    rows = np.asarray(rows)
    if rows.ndim != 2:
        raise ValueError(f"rows must be (batch, length), got shape {rows.shape}")
    if min_match < 1:
        raise ValueError(f"min_match must be >= 1, got {min_match}")
    batch, length = rows.shape
    mask = np.zeros((batch, length), dtype=bool)
    if length <= min_match:
        return mask
    windows = length - min_match + 1  # k-grams rows[:, e - min_match : e] for their end e = min_match .. length
    values = rows.astype(np.uint64) + np.uint64(1)
    hashes = np.zeros((batch, windows), dtype=np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, which is what a rolling hash wants
        for i in range(min_match):
            hashes = hashes * _HASH_MULTIPLIER + values[:, i:i + windows]
    boundaries = list(boundary_ids)
    if boundaries:
        is_boundary = np.isin(rows, boundaries).astype(np.int64)
        cumulative = np.concatenate([np.zeros((batch, 1), dtype=np.int64), np.cumsum(is_boundary, axis=1)], axis=1)
        clean = (cumulative[:, min_match:] - cumulative[:, :windows]) == 0  # (B, windows)
    else:
        clean = np.ones((batch, windows), dtype=bool)
    # Sort each row's clean k-grams by (row, hash, end): a k-gram is a repeat when the one before it in this
    # order is in the same row with the same hash.
    row_of = np.broadcast_to(np.arange(batch)[:, None], (batch, windows))[clean]
    end_of = np.broadcast_to(np.arange(min_match, length + 1)[None, :], (batch, windows))[clean]
    hash_of = hashes[clean]
    order = np.lexsort((end_of, hash_of, row_of))
    same = np.zeros(len(order), dtype=bool)
    same[1:] = (row_of[order][1:] == row_of[order][:-1]) & (hash_of[order][1:] == hash_of[order][:-1])
    repeat_rows, repeat_ends = row_of[order][same], end_of[order][same]
    inside = repeat_ends < length  # a k-gram ending at the row's end has no target after it
    mask[repeat_rows[inside], repeat_ends[inside]] = True
    return mask


def copy_weights(rows: np.ndarray, weight: float, min_match: int = DEFAULT_MIN_MATCH,
                 boundary_ids: Iterable[int] = ()) -> np.ndarray:
    """(B, N - 1) float32 loss weights of the targets rows[:, 1:]: `weight` on copy targets, 1 elsewhere."""
    if weight <= 0:
        raise ValueError(f"the copy weight must be positive, got {weight}")
    mask = copy_target_mask(rows, min_match, boundary_ids)[:, 1:]
    return np.where(mask, np.float32(weight), np.float32(1.0)).astype(np.float32)
