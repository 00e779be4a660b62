"""The copy head against naive references: match lengths and copy distributions from plain Python loops,
the incremental state against the whole-window computation, EM against a grid search; its file, read and
written through musicmha.checkpoint with the tokenizer's sentinels."""

import json
import math

import numpy as np
import pytest
import torch

from musicmha.errors import ConfigError
from reference import naive_copy
from musicmha.evaluation.copy_fit import fit_weights
from musicmha.files import COPY_HEAD_FILE
from musicmha.generation.copy_head import (MAX_WEIGHT, CopyHead, CopyState, copy_distribution, load_copy_head, match_runs,
                                          mix, save_copy_head)


def _sequences(seed: int, batch: int = 3, length: int = 40, vocab: int = 5) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(batch):
        phrase = rng.integers(0, vocab, size=9).tolist()  # a phrase that comes back, plus noise
        row = (phrase + rng.integers(0, vocab, size=6).tolist() + phrase + phrase)[:length]
        rows.append(row + rng.integers(0, vocab, size=length - len(row)).tolist())
    return torch.tensor(rows)


@pytest.mark.parametrize("max_match", [3, 8, 64])
def test_copy_distribution_matches_the_naive_search(max_match):
    tokens = _sequences(0)
    q, lengths = copy_distribution(tokens, 5, max_match)
    for row in range(tokens.shape[0]):
        want_q, want_lengths = naive_copy(tokens[row].tolist(), 5, max_match)
        assert lengths[row].tolist() == want_lengths.tolist()
        torch.testing.assert_close(q[row], torch.from_numpy(want_q).float())
    assert lengths.max() >= min(max_match, 9)  # the 9-token phrase comes back


def test_match_runs_are_zero_on_and_above_the_diagonal():
    runs = match_runs(torch.zeros(1, 6, dtype=torch.long), 64)  # all equal: runs grow along each diagonal
    expected = torch.tensor([[c + 1 if c < a else 0 for c in range(6)] for a in range(6)])  # from the start
    assert torch.equal(runs[0].long(), expected)


def _follow(head: CopyHead, tokens: torch.Tensor, start: int, vocab: int) -> CopyState:
    """A CopyState started on tokens[:, :start], then fed the rest one column at a time, checked at every step
    against copy_distribution over the whole window."""
    q, lengths = copy_distribution(tokens, vocab, head.max_match, head.transparent)
    state = CopyState(head, tokens[:, :start], vocab_size=vocab)
    for i in range(start - 1, tokens.shape[1]):
        if i >= start:
            state.push(tokens[:, i])
        step_q, step_lengths = state.distribution()
        assert torch.equal(step_lengths, lengths[:, i]), i
        torch.testing.assert_close(step_q, q[:, i])
    return state


def test_the_incremental_state_equals_the_whole_window():
    tokens = _sequences(1)
    head = CopyHead(bucket_starts=(2, 4, 8), weights=(0.1, 0.5, 0.9))
    q, lengths = copy_distribution(tokens, 5, head.max_match)
    state = _follow(head, tokens, 5, vocab=5)
    logits = torch.randn(3, 5)
    torch.testing.assert_close(state.mix(logits), mix(logits, q[:, -1], head.weight_of(lengths[:, -1])))


SENTINELS = (5, 6)  # transparent ids beyond the 5-token vocabulary of _sequences


def _with_sentinels(tokens: torch.Tensor, seed: int) -> torch.Tensor:
    """Each row with sentinel tokens inserted at its own random places (three of them, one at the start)."""
    rng = np.random.default_rng(seed)
    rows = []
    for row in tokens.tolist():
        for place in (0, *sorted(rng.choice(np.arange(1, len(row)), size=2, replace=False))):
            row.insert(int(place), int(rng.choice(SENTINELS)))
        rows.append(row)
    return torch.tensor(rows)


def test_transparent_tokens_are_left_out_of_the_search():
    tokens = _with_sentinels(_sequences(2), seed=2)
    q, lengths = copy_distribution(tokens, 7, 8, transparent=SENTINELS)
    for row in range(tokens.shape[0]):
        seq = tokens[row].tolist()
        kept = [t for t in seq if t not in SENTINELS]
        want_q, want_lengths = naive_copy(kept, 7, 8)
        for i in range(len(seq)):
            k = sum(t not in SENTINELS for t in seq[:i + 1]) - 1  # the last kept token up to i
            assert lengths[row, i] == (want_lengths[k] if k >= 0 else 0), (row, i)
            torch.testing.assert_close(q[row, i], torch.from_numpy(want_q[k]).float() if k >= 0 else torch.zeros(7))
    assert not q[..., list(SENTINELS)].any()  # the head never proposes a sentinel
    without = copy_distribution(tokens, 7, 8)[1]
    assert (lengths > without).any()  # matches now run across the left-out tokens


def test_the_incremental_state_leaves_out_what_every_row_leaves_out():
    base = _sequences(3)
    tokens = torch.cat([base[:, :12], torch.full((3, 1), 5), base[:, 12:20], torch.full((3, 1), 6), base[:, 20:]], 1)
    head = CopyHead(bucket_starts=(2, 4, 8), weights=(0.1, 0.5, 0.9), transparent=SENTINELS)
    state = _follow(head, tokens, 16, vocab=7)
    mixed = torch.tensor([5, 0, 1])  # a sentinel in one row only is an ordinary token there
    state.push(mixed)
    history = torch.cat([tokens[:, [i for i in range(tokens.shape[1]) if i not in (12, 21)]], mixed[:, None]], 1)
    want_q, want_lengths = copy_distribution(history, 7, head.max_match)  # nothing left out
    step_q, step_lengths = state.distribution()
    assert torch.equal(step_lengths, want_lengths[:, -1])
    torch.testing.assert_close(step_q, want_q[:, -1])


def test_the_mixture_is_a_distribution_and_the_model_alone_without_a_match():
    logits = torch.randn(2, 7, 11)
    q = torch.softmax(torch.randn(2, 7, 11), dim=-1)
    weight = torch.tensor([[0.0, 0.2, 0.5, 0.99, 0.0, 0.3, 0.7]] * 2)
    logp = mix(logits, q, weight)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(2, 7))
    torch.testing.assert_close(logp[:, 0], torch.log_softmax(logits[:, 0], -1))
    expected = torch.log(0.8 * torch.softmax(logits[:, 1], -1) + 0.2 * q[:, 1])
    torch.testing.assert_close(logp[:, 1], expected)
    masked = logits.clone()
    masked[..., 3] = float("-inf")
    zero_q = q.clone()
    zero_q[..., 3] = 0.0
    assert torch.isneginf(mix(masked, zero_q, weight)[..., 3]).all()  # a masked token stays masked, no NaN


def test_weight_of_reads_the_buckets():
    head = CopyHead(bucket_starts=(4, 8, 16), weights=(0.1, 0.5, 0.9))
    lengths = torch.tensor([0, 3, 4, 7, 8, 15, 16, 64])
    assert head.weight_of(lengths).tolist() == pytest.approx([0, 0, 0.1, 0.1, 0.5, 0.5, 0.9, 0.9])


def test_fit_weights_finds_the_likelihood_maximum():
    rng = np.random.default_rng(0)
    n = 4000
    lengths = rng.choice([2, 5, 20], size=n)
    model_prob = rng.uniform(0.05, 0.9, size=n)
    copy_right = rng.random(n) < np.where(lengths == 20, 0.9, 0.4)  # long matches copy right more often
    copy_prob = np.where(copy_right, 1.0, 0.0)
    weights = fit_weights(model_prob, copy_prob, lengths, (4, 16))
    grid = np.linspace(0, MAX_WEIGHT, 991)
    for bucket, length in enumerate((5, 20)):
        pm, pc = model_prob[lengths == length], copy_prob[lengths == length]
        loglik = [np.log((1 - w) * pm + w * pc).sum() for w in grid]
        assert weights[bucket] == pytest.approx(grid[int(np.argmax(loglik))], abs=2e-3)
    assert weights[1] > weights[0]


def test_a_copy_head_lowers_the_nll_of_a_repeat():
    phrase = [0, 3, 1, 4, 1, 2, 2, 0, 4]
    tokens = torch.tensor([phrase * 4])
    logits = torch.zeros(1, 36, 5)  # a model that knows nothing: uniform
    head = CopyHead(bucket_starts=(4,), weights=(0.9,))
    nll = -head.mix_log_probs(logits, tokens)[0, :-1].gather(-1, tokens[0, 1:, None])[:, 0]
    torch.testing.assert_close(nll[:3], torch.full((3,), math.log(5)))  # no earlier match yet
    # from the second phrase's 4th token on, every token continues a match that copies it right
    torch.testing.assert_close(nll[12:], torch.full((23,), -math.log(0.9 + 0.1 / 5)))


def test_sampling_multiplies_the_odds_by_the_boost_and_keeps_the_cap():
    head = CopyHead(bucket_starts=(4, 8, 16), weights=(0.0, 0.25, 0.98), sampling_boost=3.0)
    sampled = head.for_sampling()
    assert sampled.weights[0] == 0.0 and sampled.sampling_boost == 1.0
    assert sampled.weights[1] / (1 - sampled.weights[1]) == pytest.approx(3 * 0.25 / 0.75)
    assert sampled.weights[2] == MAX_WEIGHT  # odds 147 would give 0.993
    assert CopyHead(weights=(0.1, 0.2, 0.3, 0.4, 0.5)).for_sampling().weights == (0.1, 0.2, 0.3, 0.4, 0.5)
    # a request's boost replaces the saved one: boost 3 asked of a head saved at 1 is the head saved at 3
    assert CopyHead(bucket_starts=(4, 8, 16), weights=(0.0, 0.25, 0.98)).for_sampling(3.0) == sampled
    assert head.for_sampling(1.0).weights == head.weights
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="sampling_boost"):
            CopyHead(sampling_boost=bad)


def test_save_load_and_bad_files(tmp_path):
    from musicmha.data.tokenizer import MusicTokenizer

    tokenizer = MusicTokenizer.from_config()
    head = CopyHead(bucket_starts=(4, 8), weights=(0.25, 0.75), fitted_on={"data": "x"}, sampling_boost=2.5,
                    transparent=(1, 2))
    assert save_copy_head(tmp_path, head) == tmp_path / COPY_HEAD_FILE
    assert "transparent" not in json.loads((tmp_path / COPY_HEAD_FILE).read_text())  # it follows the tokenizer
    loaded = load_copy_head(tmp_path, tokenizer)
    # loading pairs the head with the tokenizer's sentinels: they cannot be forgotten
    assert loaded.transparent == tokenizer.fim_tokens.all_ids and len(loaded.transparent) > 2
    assert loaded == CopyHead(bucket_starts=(4, 8), weights=(0.25, 0.75), fitted_on={"data": "x"},
                              sampling_boost=2.5, transparent=tokenizer.fim_tokens.all_ids)
    assert load_copy_head(tmp_path / "missing", tokenizer) is None
    for text, message in (("{not json", "not a valid copy head"), ("[1, 2]", "JSON object"),
                          (json.dumps({"bucket_starts": [4], "weights": [1.5]}), "weights must be in"),
                          (json.dumps({"weights": [0.5], "colour": "red"}), "unexpected keyword")):
        (tmp_path / COPY_HEAD_FILE).write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_copy_head(tmp_path, tokenizer)
    with pytest.raises(ConfigError, match="one weight per bucket"):
        CopyHead(bucket_starts=(4, 8), weights=(0.5,))
    with pytest.raises(ConfigError, match="increasing"):
        CopyHead(bucket_starts=(8, 4), weights=(0.5, 0.5))
