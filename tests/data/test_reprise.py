"""Reprise rows (musicmha/data/reprise.py): A A B… inside one piece, at bar lines, same length, exact."""

from pathlib import Path

import numpy as np
import pytest

from musicmha.data import reprise
from musicmha.data.dataset import TokenSplit, batch_for_step
from musicmha.data.tokenizer import MusicTokenizer
from musicmha.errors import MusicmhaError

BAR, BOS, EOS = 5, 1, 2


def piece_window(rng, length, bars_every=(8, 30), start_offset=3):
    """A window of random notes (ids 10..99) with bar lines at random gaps, starting mid-bar."""
    window = list(rng.integers(10, 100, size=start_offset))
    while len(window) < length:
        window.append(BAR)
        window += list(rng.integers(10, 100, size=int(rng.integers(*bars_every))))
    return np.asarray(window[:length], dtype=np.int64)


def test_a_reprise_row_repeats_its_opening_bars_from_a_bar_line():
    rng = np.random.default_rng(0)
    for seed in range(30):
        window = piece_window(rng, 400)
        row = reprise.reprise(window, BAR, BOS, EOS, np.random.default_rng(seed))
        assert row is not None and len(row) == len(window)
        first = int(np.flatnonzero(window == BAR)[0])
        # the row keeps the window up to some bar line h, then replays the window from its first bar line
        h = next(h for h in range(first + reprise.MIN_SECTION, len(window))
                 if (row[:h] == window[:h]).all() and (row[h:] == window[first:first + len(window) - h]).all())
        assert window[h] == BAR and h - first >= reprise.MIN_SECTION and h <= 3 * len(window) // 4


def test_no_reprise_across_a_piece_boundary_or_without_bars():
    rng = np.random.default_rng(1)
    window = piece_window(rng, 300)
    first = int(np.flatnonzero(window == BAR)[0])
    window[first + 20] = EOS  # the piece ends before any repeat point is far enough
    assert reprise.reprise(window, BAR, BOS, EOS, rng) is None
    assert reprise.reprise(np.full(300, 42), BAR, BOS, EOS, rng) is None


@pytest.fixture
def tokens(prompt_tokens) -> Path:
    return prompt_tokens


def test_batches_with_reprise_rows_are_real_windows_repeated(tokens):
    split = TokenSplit(tokens, "train")
    bar_id = MusicTokenizer.load(tokens).bar_id
    args = dict(seq_len=511, batch_size=8, seed=3, step=7)
    plain = batch_for_step(split, **args)
    assert (batch_for_step(split, **args, reprise_rate=0.0, bar_id=bar_id) == plain).all()
    a = batch_for_step(split, **args, reprise_rate=1.0, bar_id=bar_id)
    assert a.shape == plain.shape and (batch_for_step(split, **args, reprise_rate=1.0, bar_id=bar_id) == a).all()
    changed = 0
    for row, window in zip(a, plain, strict=True):
        if (row == window).all():
            continue
        changed += 1
        first = int(np.flatnonzero(window == bar_id)[0])
        # some bar line h at least MIN_SECTION after the first: the window up to h, then the window from `first`
        assert any((row[:h] == window[:h]).all() and (row[h:] == window[first:first + len(window) - h]).all()
                   for h in np.flatnonzero(window == bar_id) if h >= first + reprise.MIN_SECTION)
    assert changed >= 6
    # each rank of a 2-process run takes its slice of the same global batch
    halves = [batch_for_step(split, **{**args, "batch_size": 4}, rank=r, world_size=2, reprise_rate=1.0,
                             bar_id=bar_id) for r in range(2)]
    assert (np.concatenate(halves) == a).all()
    with pytest.raises(MusicmhaError):
        batch_for_step(split, **args, reprise_rate=0.5)  # no bar id
