"""The shipped checkpoints (the default musicmha-3, the previous defaults musicmha-2 and musicmha-1k, the first
musicmha-small)
predict real held-out music better than n-gram baselines.

No prebuilt corpus here (building it takes ~20 min), so the fixture converts Bach chorales from music21's
corpus with our own corpus code (`score_to_midi.convert_file`, as `musicmha corpus` does) and tokenizes them with the
checkpoint's tokenizer (BOS + REMI ids + EOS, as `musicmha prepare` does):
- the first 8 chorales that the deterministic split (sha256 of the piece id) puts in the TEST split: the
  model never trained on them;
- every TRAIN-split chorale (376), to fit the baselines: Kneser-Ney 4- and 6-grams fitted on in-domain
  chorales, a harder bar on chorales than the full-corpus 4-gram of docs/benchmarks.md (mostly folk tunes).
The default models must score at most 0.85x the 6-gram (issue 13's target, docs/results.md section 9); the first
small model, kept for history, only beats the 4-gram.
"""

from __future__ import annotations

import math
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
SHIPPED = ["musicmha-3", "musicmha-2", "musicmha-1k", "musicmha-small"]
N_TEST = 8
# checkpoint -> (n-gram order, largest model NLL / n-gram NLL it must stay under)
BARS = {"musicmha-3": (6, 0.85), "musicmha-2": (6, 0.85), "musicmha-1k": (6, 0.85), "musicmha-small": (4, 0.93)}

pytestmark = pytest.mark.slow


def _convert(args: tuple[str, str]) -> str:
    from musicmha.data.score_to_midi import convert_file

    rel, out = args
    (result,) = convert_file(rel, out, 60.0, None)
    assert result.error is None, f"{rel}: {result.error}"
    return str(Path(out) / result.path)


@pytest.fixture(scope="module")
def chorale_midi(tmp_path_factory) -> dict[str, list[str]]:
    """The chosen chorales converted once: split -> MIDI paths."""
    from musicmha.data.corpus import available_collections
    from musicmha.data.split import split_of

    chorales = available_collections()["bach"]  # sorted piece ids, e.g. "bach/bwv1.6.mxl"
    chosen = {"test": [r for r in chorales if split_of(r) == "test"][:N_TEST],
              "train": [r for r in chorales if split_of(r) == "train"]}
    assert len(chosen["test"]) == N_TEST and len(chosen["train"]) > 300
    out = str(tmp_path_factory.mktemp("chorales"))
    jobs = [(rel, out) for rels in chosen.values() for rel in rels]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        paths = dict(zip([rel for rel, _ in jobs], pool.map(_convert, jobs, chunksize=4)))
    return {split: [paths[rel] for rel in rels] for split, rels in chosen.items()}


@pytest.fixture(scope="module", params=SHIPPED)
def checkpoint_and_tokens(request, chorale_midi) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """A shipped checkpoint and the chorales tokenized with its own tokenizer (BOS + ids + EOS)."""
    from musicmha.data.midi_io import load_midi
    from musicmha.data.tokenizer import MusicTokenizer

    folder = CHECKPOINTS / request.param
    tok = MusicTokenizer.load(folder)
    return folder, {split: [np.array([tok.bos_id, *tok.encode(load_midi(path)), tok.eos_id], dtype=np.int64)
                            for path in paths] for split, paths in chorale_midi.items()}


def _model_nll(model, pieces: list[np.ndarray], head=None) -> tuple[float, int]:
    """Sum of NLL over consecutive windows of max_seq_len predicted tokens (as `musicmha eval` windows),
    of the model alone or mixed with a copy head."""
    window = model.config.max_seq_len
    total, count = 0.0, 0
    with torch.no_grad():
        for piece in pieces:
            ids = torch.from_numpy(piece)
            for start in range(0, len(ids) - 1, window):
                chunk = ids[start:start + window + 1]
                logits, _ = model(chunk[None, :-1])
                if head is None:
                    logp = F.log_softmax(logits[0].float(), -1)
                else:
                    logp = head.mix_log_probs(logits, chunk[None, :-1])[0]
                total += F.nll_loss(logp, chunk[1:], reduction="sum").item()
                count += len(chunk) - 1
    return total, count


def test_shipped_model_beats_ngram_baselines_on_test_split_chorales(checkpoint_and_tokens):
    from musicmha.nn.model import MusicTransformer
    from musicmha.evaluation.ngram import KneserNey, unigram_nll

    folder, chorale_tokens = checkpoint_and_tokens
    model = MusicTransformer.from_pretrained(folder)
    vocab, bos = model.config.vocab_size, 1
    test, train = chorale_tokens["test"], chorale_tokens["train"]
    assert sum(len(p) for p in test) > 5_000  # real pieces, ~1,300 tokens each

    nll, n = _model_nll(model, test)
    order, largest_ratio = BARS[folder.name]
    ngram_nll, ngram_n = KneserNey(train, order=order, vocab_size=vocab, bos_id=bos).nll(test)
    uni_nll, uni_n = unigram_nll(train, test, vocab)
    assert n == ngram_n == uni_n  # the same predicted tokens: every token after each piece's BOS
    model_nll, ngram, unigram = nll / n, ngram_nll / n, uni_nll / n
    print(f"\n{folder.name}: {len(test)} test chorales, {n} tokens: model {model_nll:.3f}, KN {order}-gram "
          f"{ngram:.3f} (ratio {model_nll / ngram:.3f}), unigram {unigram:.3f} nats/token")
    assert math.isfinite(model_nll)
    assert unigram > ngram > model_nll
    # measured on these 8 (11,739 tokens): musicmha-1k (step 1,550) 0.833 against the KN 6-gram's 1.033, a ratio
    # of 0.806; musicmha-2 (step 2,200) 0.773 (0.748; 0.704 with its copy head); musicmha-3 0.751 (0.727; 0.687
    # with its copy head); musicmha-small 1.094 against the
    # 4-gram's 1.341 (0.816); unigram 2.891
    assert model_nll / ngram <= largest_ratio


def test_the_shipped_copy_head_lowers_the_nll_of_test_split_chorales(checkpoint_and_tokens):
    from musicmha.generation.copy_head import load_copy_head
    from musicmha.data.tokenizer import MusicTokenizer
    from musicmha.nn.model import MusicTransformer

    folder, chorale_tokens = checkpoint_and_tokens
    head = load_copy_head(folder, MusicTokenizer.load(folder))
    if head is None:
        pytest.skip(f"{folder.name} ships no copy head")
    model = MusicTransformer.from_pretrained(folder)
    alone, n = _model_nll(model, chorale_tokens["test"])
    mixed, n_mixed = _model_nll(model, chorale_tokens["test"], head)
    print(f"\n{folder.name}: model alone {alone / n:.3f}, with its copy head {mixed / n:.3f} nats/token")
    assert n == n_mixed
    assert mixed / n < alone / n - 0.01  # fitted on validation pieces, it must pay on unseen ones
