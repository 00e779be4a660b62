"""Evaluating past the training length (docs/results.md, length generalization): windows longer than
max_seq_len work for the relative, rope and alibi modes with the model as trained (max_relative_distance
unchanged: farther distances share the last embedding), and are refused for learned absolute positions."""

import math

import pytest
import torch
import torch.nn.functional as F

from musicmha import ModelConfig
from musicmha.data.dataset import TokenSplit
from musicmha.errors import ConfigError
from musicmha.evaluation.evaluate import evaluate
from musicmha.nn.model import MusicTransformer
from musicmha.data.tokenizer import MusicTokenizer

TRAINED, LONG = 32, 64


def _model(position: str, vocab: int) -> MusicTransformer:
    config = ModelConfig(vocab_size=vocab, d_model=32, n_layers=2, n_heads=4, max_seq_len=TRAINED,
                         position=position, dropout=0.0)
    return MusicTransformer(config).eval()


@pytest.mark.parametrize("position", ["relative", "rope", "alibi"])
def test_windows_twice_the_training_length(real_tokens, position):
    tokenizer = MusicTokenizer.load(real_tokens)
    model = _model(position, tokenizer.vocab_size)
    result = evaluate(model, tokenizer, real_tokens, split="train", window=LONG, max_pieces=1, progress=False)
    assert model.config.max_seq_len == TRAINED and model.config.max_relative_distance == TRAINED - 1
    # by hand: each window of LONG predicted tokens in one forward pass, NLL summed per position
    piece = torch.tensor(TokenSplit(real_tokens, "train").piece(0).astype("int64"))
    assert len(piece) > 3 * LONG  # several windows, some positions averaged over more than one
    sums, counts = torch.zeros(LONG, dtype=torch.float64), torch.zeros(LONG)
    for start in range(0, len(piece) - 1, LONG):
        chunk = piece[start:start + LONG + 1]
        with torch.no_grad():
            logits = model(chunk[None, :-1])[0][0]
        nll = F.cross_entropy(logits, chunk[1:], reduction="none").double()
        sums[: len(nll)] += nll
        counts[: len(nll)] += 1
    assert result.window == LONG and len(result.nll_by_position) == LONG
    torch.testing.assert_close(torch.tensor(result.nll_by_position, dtype=torch.float64), sums / counts,
                               rtol=1e-5, atol=1e-6)
    assert math.isclose(result.nll, (sums.sum() / counts.sum()).item(), rel_tol=1e-6)


def test_learned_absolute_positions_cannot_read_past_the_training_length(real_tokens):
    tokenizer = MusicTokenizer.load(real_tokens)
    model = _model("none", tokenizer.vocab_size)
    with pytest.raises(ConfigError, match="longer than max_seq_len"):
        evaluate(model, tokenizer, real_tokens, split="train", window=LONG, max_pieces=1, progress=False)
    ok = evaluate(model, tokenizer, real_tokens, split="train", window=TRAINED, max_pieces=1, progress=False)
    assert len(ok.nll_by_position) == TRAINED
