"""Fill-in-the-middle training examples: cut at bar lines inside one piece, rearranged PSM/SPM, reversible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from musicmha.data import fim as fim_format
from musicmha.data.dataset import TokenSplit, batch_for_step
from musicmha.errors import MusicmhaError
from musicmha.data.tokenizer import MusicTokenizer

ROOT = Path(__file__).resolve().parents[2]
# Small made-up ids: 1 BOS, 2 EOS, 9 Bar, 20+ anything else; sentinels far away.
FIM = fim_format.FimTokens(prefix=100, suffix=101, middle=102, bars=tuple(range(110, 110 + fim_format.MAX_FILL_BARS)),
                           bar=9, bos=1, eos=2)


def restore(example: list[int], fim: fim_format.FimTokens = FIM) -> tuple[list[int], int]:
    """Undo a FIM example by reading its sentinels (independent of fim.rearrange): the original window and
    the announced number of bars."""
    m = example.index(fim.middle)
    n_bars = fim.bars.index(example[m + 1]) + 1
    head, middle = example[:m], example[m + 2:]
    if head[0] == fim.prefix:  # PSM
        s = head.index(fim.suffix)
        prefix, suffix = head[1:s], head[s + 1:]
    else:  # SPM
        p = head.index(fim.prefix)
        suffix, prefix = head[1:p], head[p + 1:]
    return prefix + middle + suffix, n_bars


def test_candidates_stay_inside_one_piece_and_start_at_bars():
    #                0   1   2   3   4   5   6  7  8  9  10  11  12
    window = np.array([20, 9, 21, 9, 22, 2, 1, 9, 23, 9, 24, 9, 25])
    found = fim_format.middle_candidates(window, FIM)
    # piece A: bars at 1 and 3, ends with EOS at 5; piece B: bars at 7, 9, 11 and runs past the window
    assert sorted(found) == [(1, 3, 1), (1, 5, 2), (3, 5, 1), (7, 9, 1), (7, 11, 2), (9, 11, 1)]
    for start, end, n_bars in found:
        assert window[start] == FIM.bar
        assert not set(window[start:end].tolist()) & {FIM.bos, FIM.eos}
        assert (window[start:end] == FIM.bar).sum() == n_bars


def test_candidates_never_longer_than_the_longest_fill():
    window = np.array([1] + [9, 30] * 40 + [2])
    found = fim_format.middle_candidates(window, FIM)
    assert max(n for *_, n in found) == fim_format.MAX_FILL_BARS
    assert all((window[s:e] == FIM.bar).sum() == n for s, e, n in found)


def test_rearrange_is_a_reversible_psm_or_spm_example():
    rng = np.random.default_rng(0)
    window = np.array([20, 9, 21, 22, 9, 23, 9, 24, 25, 9, 26, 2, 1, 9, 27])
    kinds = set()
    for _ in range(200):
        example = fim_format.rearrange(window, FIM, rng).tolist()
        assert len(example) == len(window) + fim_format.EXTRA_TOKENS
        original, n_bars = restore(example)
        assert original == window.tolist()
        middle = example[example.index(FIM.middle) + 2:]
        assert middle[0] == FIM.bar and middle.count(FIM.bar) == n_bars
        kinds.add(example[0])
    assert kinds == {FIM.prefix, FIM.suffix}  # both orders occur


def test_no_bars_means_no_example():
    assert fim_format.rearrange(np.array([20, 21, 22]), FIM, np.random.default_rng(0)) is None


@pytest.fixture
def tokens(prompt_tokens) -> Path:
    return prompt_tokens


def test_tokenizer_has_sentinels_and_decode_drops_them(tokens):
    tok = MusicTokenizer.load(tokens)
    fim = tok.fim_tokens
    assert fim is not None and len(set(fim.all_ids)) == 3 + fim_format.MAX_FILL_BARS
    assert fim.bar == tok.bar_id and fim.bos == tok.bos_id
    ids = tok.encode(ROOT / "data" / "prompts" / "bach_bwv66.6_chorale.mid")[:200]
    with_sentinels = [fim.prefix, *ids[:50], fim.suffix, *ids[50:], fim.middle, fim.bars_token(2)]
    assert tok.decode(with_sentinels).note_num() == tok.decode(ids).note_num()
    # The first shipped model's tokenizer predates the sentinels: it cannot infill, and says so by None.
    assert MusicTokenizer.load(ROOT / "checkpoints" / "musicmha-small").fim_tokens is None


def test_batches_with_fim_are_windows_rearranged(tokens):
    split = TokenSplit(tokens, "train")
    fim = MusicTokenizer.load(tokens).fim_tokens
    args = {"seq_len": 255, "batch_size": 8, "seed": 3, "step": 4}
    plain = batch_for_step(split, **args)
    assert (batch_for_step(split, **args, fim=fim, fim_rate=0.0) == plain).all()
    rearranged = batch_for_step(split, **args, fim=fim, fim_rate=1.0)
    assert rearranged.shape == plain.shape
    for row, original in zip(rearranged.tolist(), plain.tolist(), strict=True):
        if fim.middle not in row:  # a window without a bar line stays as it was
            assert row == original
            continue
        window, n_bars = restore(row, fim)
        assert window == original[:len(original) - fim_format.EXTRA_TOKENS]
        assert 1 <= n_bars <= fim_format.MAX_FILL_BARS
    assert sum(fim.middle in row for row in rearranged.tolist()) >= 6
    # Deterministic, and each rank of a 2-process run takes its slice of the same global batch.
    assert (batch_for_step(split, **args, fim=fim, fim_rate=1.0) == rearranged).all()
    half = {**args, "batch_size": 4}
    parts = [batch_for_step(split, **half, rank=r, world_size=2, fim=fim, fim_rate=0.5) for r in range(2)]
    assert (np.concatenate(parts) == batch_for_step(split, **args, fim=fim, fim_rate=0.5)).all()


def test_fim_rate_is_roughly_the_fraction_of_rows(tokens):
    split = TokenSplit(tokens, "train")
    fim = MusicTokenizer.load(tokens).fim_tokens
    rows = np.concatenate([batch_for_step(split, seq_len=127, batch_size=16, seed=0, step=s, fim=fim,
                                          fim_rate=0.25) for s in range(25)])
    share = np.mean([fim.middle in row for row in rows.tolist()])
    assert 0.17 < share < 0.33


def test_fim_without_sentinels_is_refused(tokens):
    split = TokenSplit(tokens, "train")
    with pytest.raises(MusicmhaError, match="FIM tokens"):
        batch_for_step(split, seq_len=64, batch_size=2, seed=0, step=0, fim=None, fim_rate=0.5)
