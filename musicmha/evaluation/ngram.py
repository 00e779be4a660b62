"""Baselines for token-level NLL: an interpolated Kneser-Ney n-gram model and the unigram cross-entropy.

Numpy only. Each n-gram is packed into one int64 (base = vocabulary size), so counting 10M tokens is a
sort, and scoring a split is a few vectorized binary searches. A piece's first tokens see a context padded
with BOS, exactly as the model sees the start of a piece; n-grams never cross pieces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _ngrams(pieces, order: int, bos: int, base: int) -> np.ndarray:
    """Packed n-grams ending at every token after the first of each piece."""
    chunks = []
    for piece in pieces:
        padded = np.concatenate([np.full(order - 2, bos, dtype=np.int64), piece.astype(np.int64)])
        windows = np.lib.stride_tricks.sliding_window_view(padded, order)
        chunks.append(windows @ (base ** np.arange(order - 1, -1, -1, dtype=np.int64)))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)


@dataclass
class _Level:
    keys: np.ndarray  # sorted packed k-grams
    counts: np.ndarray  # their (continuation) counts
    contexts: np.ndarray  # sorted packed (k-1)-gram contexts
    context_totals: np.ndarray  # sum of counts per context
    context_types: np.ndarray  # distinct next tokens per context
    discount: float


def _level(keys: np.ndarray, counts: np.ndarray, base: int) -> _Level:
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    discount = n1 / (n1 + 2 * n2) if n1 + n2 else 0.75
    contexts, inverse, types = np.unique(keys // base, return_inverse=True, return_counts=True)
    totals = np.bincount(inverse, weights=counts).astype(np.float64)
    return _Level(keys, counts.astype(np.float64), contexts, totals, types.astype(np.float64), discount)


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    where = np.searchsorted(sorted_keys, queries).clip(max=max(len(sorted_keys) - 1, 0))
    found = (sorted_keys[where] == queries) if len(sorted_keys) else np.zeros(len(queries), bool)
    return np.where(found, values[where] if len(values) else 0.0, 0.0)


class KneserNey:
    """Interpolated Kneser-Ney (Chen & Goodman 1998), one discount per order estimated from counts."""

    def __init__(self, train_pieces, *, order: int, vocab_size: int, bos_id: int) -> None:
        self.order, self.base, self.bos = order, vocab_size, bos_id
        top_keys, top_counts = np.unique(_ngrams(train_pieces, order, bos_id, vocab_size), return_counts=True)
        self.levels: dict[int, _Level] = {order: _level(top_keys, top_counts, vocab_size)}
        keys = top_keys
        for k in range(order - 1, 0, -1):  # continuation counts: distinct left extensions
            shorter = keys % vocab_size**k
            keys, counts = np.unique(shorter, return_counts=True)
            self.levels[k] = _level(keys, counts, vocab_size)

    def nll(self, pieces) -> tuple[float, int]:
        """Total NLL (nats) of every token after the first of each piece, and how many tokens that is."""
        grams = _ngrams(pieces, self.order, self.bos, self.base)
        unigram = self.levels[1]
        prob = (_lookup(unigram.keys, unigram.counts, grams % self.base) + 1.0) \
            / (unigram.counts.sum() + self.base)  # add-one floor: unseen tokens keep some mass
        for k in range(2, self.order + 1):
            level = self.levels[k]
            gram = grams % self.base**k
            context = gram // self.base
            total = _lookup(level.contexts, level.context_totals, context)
            types = _lookup(level.contexts, level.context_types, context)
            count = _lookup(level.keys, level.counts, gram)
            seen = total > 0
            safe = np.where(seen, total, 1.0)
            mixed = np.maximum(count - level.discount, 0.0) / safe + level.discount * types / safe * prob
            prob = np.where(seen, mixed, prob)
        return float(-np.log(prob).sum()), len(grams)


def unigram_nll(train_pieces, test_pieces, vocab_size: int) -> tuple[float, int]:
    """Cross-entropy of the test tokens under the add-one unigram distribution of the train tokens."""
    counts = np.ones(vocab_size)
    for piece in train_pieces:
        counts += np.bincount(piece[1:], minlength=vocab_size)
    log_p = np.log(counts / counts.sum())
    targets = np.concatenate([p[1:] for p in test_pieces])
    return float(-log_p[targets].sum()), len(targets)


def perplexity(total_nll: float, tokens: int) -> float:
    return math.exp(total_nll / tokens)
