"""Reprise examples: training windows whose opening bars come back later, as a written repeat makes them.

Measured on the first 1,024-token model at step 1,000 (benchmarks/long_context.py's copy classes, 40 test
pieces longer than 1,024 tokens, targets 768-1023): 77% of the targets continue an exact repeat of 32 tokens
or more, so a model that copies would score them near zero, yet it scores them 0.57-0.60 nats/token against
0.68 for new material, and gains 0.01 from the context beyond 256 tokens where only a far copy exists. It has
not learned to look back and copy (an "induction head"), the mechanism that makes a long context pay; in
language models that mechanism forms late, after far more tokens than a CPU run sees.

A reprise row turns a window into |: A :| B, all inside one piece and at bar lines: the window up to a bar
line `repeat_at` is kept, and from there the window's first bar onwards comes again, so the row reads
A A B…, where A is the music from the first bar line to `repeat_at`. Predicting the second A is pure
copying from 64 to 768 tokens back, which no n-gram statistic can do. Rows keep their length; the other rows
of a batch are untouched. The rate is a training option (`--reprise-rate`); 0 gives the plain batches.
"""

from __future__ import annotations

import numpy as np

MIN_SECTION = 64  # tokens of A at least: shorter repeats are already learned from local context


def repeat_points(window: np.ndarray, bar_id: int, bos_id: int, eos_id: int) -> tuple[int, list[int]]:
    """(first bar line, the bar lines where the repeat may start): bar lines at least MIN_SECTION tokens
    after the first one, with no piece boundary between the first bar line and them, and at most 3/4 into
    the window so that the copy is long enough to learn from. (-1, []) when there is none."""
    bars = np.flatnonzero(window == bar_id)
    if not len(bars):
        return -1, []
    first = int(bars[0])
    boundaries = np.flatnonzero((window == bos_id) | (window == eos_id))
    after = boundaries[boundaries > first]
    piece_end = int(after[0]) if len(after) else len(window)
    limit = min(piece_end, (3 * len(window)) // 4)
    return first, [int(b) for b in bars if first + MIN_SECTION <= b <= limit]


def reprise(window: np.ndarray, bar_id: int, bos_id: int, eos_id: int,
            rng: np.random.Generator) -> np.ndarray | None:
    """`window` made into A A B… of the same length (module docstring), the repeat point drawn uniformly
    among repeat_points; None when the window has none (too few bars, or a piece boundary too early)."""
    first, points = repeat_points(window, bar_id, bos_id, eos_id)
    if not points:
        return None
    repeat_at = points[rng.integers(len(points))]
    again = window[first:first + len(window) - repeat_at]
    return np.concatenate([window[:repeat_at], again])


def apply_to_rows(batch: np.ndarray, chosen: np.ndarray, row_seeds: np.ndarray, *, bar_id: int, bos_id: int,
                  eos_id: int) -> np.ndarray:
    """Rows of `batch` (B, L) where `chosen` is True become reprise rows, each from its own seed (drawn by the
    caller for the whole global batch, so every rank makes what a single process would)."""
    out = batch.copy()
    for r in np.flatnonzero(chosen):
        row = reprise(batch[r], bar_id, bos_id, eos_id, np.random.default_rng(int(row_seeds[r])))
        if row is not None:
            out[r] = row
    return out
