"""Fill-in-the-middle (FIM): the token format that lets one left-to-right model regenerate bars inside a piece.

Bavarian et al. 2022 ("Efficient Training of Language Models to Fill in the Middle") cut a document into
prefix · middle · suffix and train on it moved to prefix · suffix · middle with sentinel tokens, so that
generating after the sentinels *is* infilling. Here the cuts fall on bar lines (REMI `Bar` tokens), across
all tracks at once, and the middle is announced with its length in bars, so that the model knows how much
music it has to write before the suffix starts:

    PSM:  FIM_Prefix  prefix…  FIM_Suffix  suffix…  FIM_Middle  FIM_Bars<n>  Bar … (n bars)
    SPM:  FIM_Suffix  suffix…  FIM_Prefix  prefix…  FIM_Middle  FIM_Bars<n>  Bar … (n bars)

The middle has no end token: its length is known, and generation stops where the model starts bar n + 1.
This module is numpy only (training batches); `MusicTokenizer.fim_tokens` gives the ids of a tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_FILL_BARS = 16  # the longest middle the model is trained on (and so may be asked for)
PREFIX, SUFFIX, MIDDLE = "FIM_Prefix", "FIM_Suffix", "FIM_Middle"
# One "fill n bars" token per length; they are special tokens of the tokenizer, after PAD/BOS/EOS.
FIM_SPECIAL_TOKENS: tuple[str, ...] = (PREFIX, SUFFIX, MIDDLE,
                                       *(f"FIM_Bars{n}" for n in range(1, MAX_FILL_BARS + 1)))
# Tokens a FIM example adds to its window: two segment sentinels, the middle sentinel, the bar count.
EXTRA_TOKENS = 4


@dataclass(frozen=True)
class FimTokens:
    """Token ids of the FIM sentinels of one tokenizer."""

    prefix: int
    suffix: int
    middle: int
    bars: tuple[int, ...]  # bars[n - 1]: "the middle is n bars long"
    bar: int  # the tokenizer's Bar token, where cuts fall
    bos: int
    eos: int

    def bars_token(self, n: int) -> int:
        if not 1 <= n <= len(self.bars):
            raise ValueError(f"a middle of {n} bars: the model fills 1..{len(self.bars)} bars at once")
        return self.bars[n - 1]

    @property
    def all_ids(self) -> tuple[int, ...]:
        return (self.prefix, self.suffix, self.middle, *self.bars)


def middle_candidates(window: np.ndarray, fim: FimTokens) -> list[tuple[int, int, int]]:
    """Every (start, end, bars) middle of `window` that training may cut: `start` at a Bar token, `end` at a
    later Bar token or at the piece's EOS, 1..MAX_FILL_BARS bars, all inside one piece (no BOS/EOS in
    window[start:end])."""
    bars = np.flatnonzero(window == fim.bar)
    boundaries = np.flatnonzero((window == fim.bos) | (window == fim.eos))
    found = []
    for i, start in enumerate(bars):
        # The first piece boundary after `start` ends the piece this middle belongs to.
        after = boundaries[boundaries > start]
        piece_end = int(after[0]) if len(after) else len(window)
        ends = [int(b) for b in bars[i + 1:i + 1 + len(fim.bars)] if b <= piece_end]
        if len(after) and window[piece_end] == fim.eos and len(ends) < len(fim.bars):
            ends.append(piece_end)  # a middle may run to the end of the piece: the suffix is then EOS …
        found += [(int(start), end, k + 1) for k, end in enumerate(ends)]
    return found


def rearrange(window: np.ndarray, fim: FimTokens, rng: np.random.Generator) -> np.ndarray | None:
    """A FIM example made of `window` (len(window) + EXTRA_TOKENS tokens), PSM or SPM with equal odds; None
    when the window holds no bar-aligned middle. The middle's start bar is drawn uniformly, then its length
    uniformly among the lengths that fit, so short and long middles are both common."""
    candidates = middle_candidates(window, fim)
    if not candidates:
        return None
    starts = sorted({c[0] for c in candidates})
    start = starts[rng.integers(len(starts))]
    options = [c for c in candidates if c[0] == start]
    _, end, n_bars = options[rng.integers(len(options))]
    prefix, middle, suffix = window[:start], window[start:end], window[end:]
    head = [[fim.prefix], prefix, [fim.suffix], suffix]
    if rng.random() < 0.5:  # SPM: the suffix first, then the prefix running straight into the middle
        head = [[fim.suffix], suffix, [fim.prefix], prefix]
    parts = [*head, [fim.middle, fim.bars_token(n_bars)], middle]
    return np.concatenate([np.asarray(p, dtype=window.dtype) for p in parts])


def apply_to_rows(batch: np.ndarray, fim: FimTokens, chosen: np.ndarray, row_seeds: np.ndarray) -> np.ndarray:
    """Turn the rows of `batch` (B, L) where `chosen` is True into FIM examples of the same length L, each
    with its own seed. A FIM row is made from the row's first L - EXTRA_TOKENS tokens (the window it was
    drawn from, shortened), so rows never change length and the other rows are untouched. The caller draws
    `chosen` and `row_seeds` for the whole global batch, so every rank of a multi-process run makes the same
    examples as a single process would."""
    out = batch.copy()
    for r in np.flatnonzero(chosen):
        example = rearrange(batch[r, :batch.shape[1] - EXTRA_TOKENS], fim, np.random.default_rng(int(row_seeds[r])))
        if example is not None:
            out[r] = example
    return out
