"""Copy targets (musicmha/data/copy_targets.py) against a naive search, and the weighted loss they feed."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from musicmha.data.copy_targets import copy_target_mask, copy_weights
from musicmha.nn.model import MusicTransformer


def naive_mask(rows: np.ndarray, k: int, boundaries=()) -> np.ndarray:
    """True at t when rows[t-k:t] occurred ending before t, neither occurrence touching a boundary token."""
    mask = np.zeros(rows.shape, dtype=bool)
    for r, row in enumerate(rows.tolist()):
        for t in range(k, len(row)):
            gram = row[t - k:t]
            if any(token in boundaries for token in gram):
                continue
            mask[r, t] = any(row[j - k:j] == gram for j in range(k, t))
    return mask


@pytest.mark.parametrize("seed", range(6))
def test_mask_equals_a_naive_search(seed):
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 3 + seed, size=(4, 50))  # small vocabularies: many repeats, some not
    for k in (1, 2, 3, 5):
        assert np.array_equal(copy_target_mask(rows, k), naive_mask(rows, k))
        assert np.array_equal(copy_target_mask(rows, k, [0]), naive_mask(rows, k, {0}))


def test_a_repeated_phrase_marks_its_second_hearing_only():
    phrase = list(range(10, 30))
    row = np.array([[1, *phrase, 5, 6, *phrase, 7]])
    mask = copy_target_mask(row, 4)[0]
    second = 1 + len(phrase) + 2  # where the second hearing starts
    assert not mask[:second + 4].any()  # nothing before 4 tokens of the repeat were read
    assert mask[second + 4:second + len(phrase) + 1].all()  # every later target of it, and the one after
    # a BOS inside the repeat breaks it: no k-gram containing the boundary counts
    broken = row.copy()
    broken[0, second + 8] = 2
    assert not copy_target_mask(broken, 4, [2])[0, second + 9:second + 12].any()


def test_weights_and_the_weighted_loss():
    rows = np.array([[3, 4, 5, 3, 4, 5, 3, 4, 5]])
    weights = copy_weights(rows, 4.0, 2)
    assert weights.shape == (1, 8) and set(np.unique(weights)) == {1.0, 4.0}
    assert np.array_equal(weights[0] == 4.0, copy_target_mask(rows, 2)[0, 1:])
    with pytest.raises(ValueError):
        copy_weights(rows, 0.0)

    model = MusicTransformer(tiny_config(vocab_size=16)).eval()
    tokens = torch.randint(0, 16, (2, 12))
    targets = tokens.roll(-1, 1)
    targets[0, 3] = -100
    w = torch.rand(2, 12) + 0.5
    logits, loss = model(tokens, targets, loss_weights=w)
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none", ignore_index=-100)
    keep = (targets != -100).float()
    assert torch.allclose(loss, (nll * w * keep).sum() / (w * keep).sum())
    _, plain = model(tokens, targets)
    _, ones = model(tokens, targets, loss_weights=torch.ones(2, 12))
    assert torch.allclose(plain, ones)
