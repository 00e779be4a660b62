"""The n-gram baselines against direct computations on toy data."""

import math

import numpy as np

from musicmha.evaluation.ngram import KneserNey, unigram_nll


def test_unigram_nll_is_the_add_one_cross_entropy():
    train = [np.array([0, 1, 1, 2]), np.array([0, 2])]
    test = [np.array([0, 1, 3])]
    nll, n = unigram_nll(train, test, vocab_size=4)
    counts = np.array([1, 3, 3, 1])  # add-one; BOS (position 0 of each piece) is never a target
    assert n == 2 and math.isclose(nll, -math.log(counts[1] / 8) - math.log(counts[3] / 8))


def test_kneser_ney_is_a_distribution_and_learns_repetition():
    rng = np.random.default_rng(0)
    vocab, bos = 7, 0
    train = [np.concatenate([[bos], np.tile([1, 2, 3, 4], 30)])] + \
            [np.concatenate([[bos], rng.integers(1, vocab, 50)]) for _ in range(5)]
    model = KneserNey(train, order=3, vocab_size=vocab, bos_id=bos)
    for context in ([1, 2], [5, 6], [bos, bos]):  # probabilities of every next token sum to one
        total = 0.0
        for w in range(vocab):
            # a piece's first token is never predicted: this difference is -log p(w | context)
            nll, _ = model.nll([np.array([*context, w])])
            total += math.exp(-(nll - model.nll([np.array(context)])[0]))
        assert math.isclose(total, 1.0, rel_tol=1e-9), context
    repeated, n = model.nll([np.concatenate([[bos], np.tile([1, 2, 3, 4], 10)])])
    noise, m = model.nll([np.concatenate([[bos], rng.integers(1, vocab, 40)])])
    assert repeated / n < 0.5 < noise / m
