"""copy_classes against a naive search over every earlier position."""

import numpy as np
import pytest

from musicmha.evaluation.repeats import FAR, NEAR, NONE, copy_classes


def naive_classes(seq, start, end, short, k):
    out = []
    for t in range(start, end):
        sources = [j for j in range(k, t) if list(seq[j - k:j + 1]) == list(seq[t - k:t + 1])] if t >= k else []
        if not sources:
            out.append(NONE)
        elif any(j - k >= t - short for j in sources):
            out.append(NEAR)
        else:
            out.append(FAR)
    return out


@pytest.mark.parametrize("vocab,k,short", [(2, 3, 8), (3, 2, 5), (4, 4, 16)])
def test_matches_a_naive_search_on_repetitive_random_sequences(vocab, k, short):
    rng = np.random.default_rng(vocab)
    for _ in range(20):
        seq = rng.integers(0, vocab, size=int(rng.integers(2, 60)))
        start = int(rng.integers(1, len(seq) + 1))
        got = copy_classes(seq, start, len(seq), short=short, k=k)
        assert got == naive_classes(seq, start, len(seq), short, k)
        assert len(got) == len(seq) - start


def test_a_phrase_repeated_from_far_back_is_far_and_only_far():
    rng = np.random.default_rng(0)
    phrase = rng.integers(100, 200, size=40)
    filler = rng.integers(1000, 100000, size=300)  # all distinct enough never to repeat
    seq = np.concatenate([phrase, filler, phrase])
    classes = copy_classes(seq, 340, len(seq), short=256, k=8)
    assert classes[:8] == [NONE] * 8  # the repeat's first k tokens have no matching context yet
    assert set(classes[8:]) == {FAR}
    near = copy_classes(np.concatenate([phrase, phrase]), 40, 80, short=256, k=8)
    assert set(near[8:]) == {NEAR}


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        copy_classes(np.arange(10), 0, 5, short=8, k=2)
    with pytest.raises(ValueError):
        copy_classes(np.arange(10), 2, 5, short=2, k=2)
